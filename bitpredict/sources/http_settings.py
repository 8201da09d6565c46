"""The HTTP policy every source shares (timeouts, retries, backoff, rate limits): its settings section.

Why here and not in ``bitpredict.config``: the source modules take only the settings they use, so they
import this leaf module, never the whole settings object; ``bitpredict.config`` nests it as ``http``
(``BITPREDICT_HTTP__TIMEOUT_S`` …), so the setting names are unchanged.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class HttpSettings(BaseModel):
    """How every source talks to its API (shared HTTP layer). Unknown keys are typos, so they are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout_s: float = Field(10.0, gt=0, description="Connect+read timeout per request.")
    max_retries: int = Field(5, ge=0, le=20, description="Retries on 5xx/429/connection errors.")
    backoff_base_s: float = Field(0.5, ge=0, description="First backoff; doubles per retry, with jitter.")
    backoff_max_s: float = Field(60.0, gt=0, description="Cap on one backoff and on Retry-After.")
    rate_limit_per_s: dict[str, float] = Field(
        default_factory=lambda: {
            "coingecko": 0.2,  # public API: about 10-30 calls/min
            "cryptocompare": 1.0,
            "binance": 5.0,
            "rss": 2.0,
            "twitter": 0.2,
        },
        description="Client-side request rate per source (requests per second).",
    )

    @field_validator("rate_limit_per_s")
    @classmethod
    def _positive_rates(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in value.items() if v <= 0}
        if bad:
            raise ValueError(f"rates must be > 0, got {bad}")
        return value
