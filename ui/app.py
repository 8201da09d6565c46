"""BitPredict — the Streamlit front end: market, forecast (next day to 30 days), model card, sentiment, monitoring.

    make ui        # streamlit run ui/app.py on 127.0.0.1:8501

Everything comes from the same settings as the pipeline (``BITPREDICT_*``, ``params.yaml``): the data dir,
MLflow, and the transformer's URL, so the page works against ``make serve`` and a cluster's InferenceService.
When something is missing the page says what and which command fixes it; it never shows a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `streamlit run ui/app.py` from the repo root

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from bitpredict.config import Settings, load_settings
from ui import data

PAGES = ("Market", "Forecast", "Model", "Sentiment", "Monitoring")
RENAMED = {"Next day": "Forecast"}  # ?page= links to an older name still open the page
TTL = 60  # seconds: slow reads and service calls are cached this long


def settings() -> Settings:
    return load_settings()  # cheap; the cached readers below are keyed by the settings they depend on


def key() -> str:
    """What the cached readers depend on: a change of data dir or endpoint must not serve stale results."""
    s = settings()
    return f"{s.data_dir}|{s.tracking_uri}|{s.transformer_url}|{s.predictor_url}"


@st.cache_data(ttl=TTL, show_spinner="Loading market data…")
def cached_market(config: str) -> pd.DataFrame | data.Missing:
    return data.market(settings())


@st.cache_data(ttl=TTL, show_spinner="Loading the backtest…")
def cached_backtest(config: str) -> pd.DataFrame | data.Missing:
    return data.backtest(settings())


@st.cache_data(ttl=TTL, show_spinner="Asking the forecast service…")
def cached_forecast(config: str, last_day: str) -> dict | data.Missing:
    bars = cached_market(config)
    return bars if isinstance(bars, data.Missing) else data.forecast(settings(), bars)


@st.cache_data(ttl=TTL, show_spinner="Reading the MLflow registry…")
def cached_registry(config: str) -> dict | data.Missing:
    return data.registry(settings())


@st.cache_data(ttl=TTL, show_spinner="Checking the services…")
def cached_health(config: str) -> pd.DataFrame:
    return data.health(settings())


def missing(item: data.Missing) -> None:
    st.info(f"**{item.what.capitalize()}.** To fix it, run:\n\n```\n{item.fix}\n```")


def market_page() -> None:
    st.header("Market")
    bars = cached_market(key())
    if isinstance(bars, data.Missing):
        missing(bars)
        return
    years = st.select_slider("Range", options=["3M", "6M", "1Y", "2Y", "5Y", "All"], value="1Y")
    days = {"3M": 92, "6M": 183, "1Y": 365, "2Y": 730, "5Y": 1826, "All": len(bars)}[years]
    view = bars.tail(days)
    figure = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.75, 0.25], vertical_spacing=0.03)
    figure.add_trace(
        go.Candlestick(x=view["timestamp"], open=view["open"], high=view["high"], low=view["low"],
                       close=view["close"], name="BTC-USD"),
        row=1, col=1,
    )  # fmt: skip
    figure.add_trace(go.Bar(x=view["timestamp"], y=view["volume"], name="volume (BTC)", opacity=0.5), row=2, col=1)
    past = cached_backtest(key())
    if not isinstance(past, data.Missing):
        shown = past[past["target_day"] >= view["timestamp"].min()]
        method = str(past["method"].iloc[0]) if len(past) else ""
        if not shown.empty:
            figure.add_trace(go.Scatter(x=shown["target_day"], y=shown["upper_close"], line={"width": 0},
                                        showlegend=False, hoverinfo="skip"), row=1, col=1)  # fmt: skip
            figure.add_trace(
                go.Scatter(x=shown["target_day"], y=shown["lower_close"], fill="tonexty", line={"width": 0},
                           fillcolor="rgba(31,119,180,0.2)", name=f"{method} interval (10–90 %)"),
                row=1, col=1,
            )  # fmt: skip
            figure.add_trace(go.Scatter(x=shown["target_day"], y=shown["forecast_close"],
                                        name=f"{method} forecast (walk-forward)",
                                        line={"color": "#1f77b4", "width": 1.5}), row=1, col=1)  # fmt: skip
    figure.update_layout(height=620, xaxis_rangeslider_visible=False, margin={"t": 20, "b": 20})
    st.plotly_chart(figure, use_container_width=True, key="market-chart")
    last = view.iloc[-1]
    st.caption(f"Last bar {last['timestamp'].date()}: close ${last['close']:,.2f}. Forecasts are the walk-forward "
               "backtest of the best method (each made with data up to the day before).")  # fmt: skip


def forecast_page() -> None:
    st.header("Forecast")
    bars = cached_market(key())
    if isinstance(bars, data.Missing):
        missing(bars)
        return
    forecast = cached_forecast(key(), str(bars["timestamp"].iloc[-1].date()))
    if isinstance(forecast, data.Missing):
        missing(forecast)
        return
    close = float(bars["close"].iloc[-1])
    change = forecast["predicted_close"] / close - 1
    arrow = {1: "up", -1: "down"}.get(forecast["direction"], "flat")
    st.subheader(f"Forecast for {forecast['as_of']}")
    cols = st.columns(4)
    cols[0].metric("Predicted close", f"${forecast['predicted_close']:,.2f}", f"{change:+.2%}" if change else None)
    cols[1].metric("Direction", arrow, help="flat: the median is today's close (a baseline makes no direction call)")
    cols[2].metric("Interval (10–90 %)", f"${forecast['lower'] / 1000:,.1f}k – {forecast['upper'] / 1000:,.1f}k")
    cols[3].metric("Model version", str(forecast["model_version"]))
    state = data.published(settings())
    line, served = champion_line(state), str(forecast["model_version"])
    if line is None:
        st.markdown(f"Served model version {served} (nothing published yet to say why it won).")
    elif served in same_model(state["champion"]):
        st.markdown(f"{line} The forecasts are its quantiles, served by the transformer.")
    else:  # e.g. `make serve` still on an earlier export: say which model the figures below come from
        st.markdown(f"{line} The service still answers with version {served}: the figures below are that model's.")
    st.caption(f"From the latest {forecast['parameters'].get('rows', '?')} stored days; sentiment: "
               f"{forecast['parameters'].get('sentiment', '?')}. Last close ${close:,.2f} on "
               f"{bars['timestamp'].iloc[-1].date()}. See Model for the evaluation behind the choice.")  # fmt: skip

    horizons = forecast.get("horizons")
    history = bars.tail(90)
    if horizons is None:
        st.info(f"Horizons beyond the next day are unavailable: {forecast.get('horizons_missing')}. The chart "
                "shows the next day only; a model trained with `model.horizons` serves 1 to 30 days.")  # fmt: skip
    chart, risk = st.columns([3, 2]) if horizons is not None else (st.container(), None)
    with chart:
        st.plotly_chart(fan_chart(history, forecast, close), use_container_width=True, key="forecast-chart")
        if horizons is not None:
            marked = ", ".join(f"{h} d" for h in horizons["horizons"])
            st.caption(f"Fan chart: the last 90 closes, then the forecast's 25–75 %, 10–90 % and 5–95 % bands and its "
                       f"median for every day to {int(horizons['horizons'].max())} days. The model serves the "
                       f"horizons marked ◆ ({marked}); the band between them is interpolated (each quantile linear "
                       "in the days in √days-scaled units).")  # fmt: skip
    if risk is not None:
        with risk:
            st.markdown("**Risk by horizon** (for a long position held from the last close)")
            st.table(risk_view(horizons["risk"]))
            st.caption("VaR 95 %: the loss of a long position not exceeded with 95 % probability; ES 95 %: the mean "
                       "loss in the worst 5 % (both as a share of the position). P(rise/fall ≥ x %): the probability "
                       "that the close at the horizon is at least x % above/below the last close. Range: the "
                       "central 68 % of the close at the horizon, in USD.")  # fmt: skip
    calibration_section()


def champion_line(state: dict | None) -> str | None:
    """The published champion in one line: model, version, kind and why it won (the Model and Forecast pages)."""
    champion = (state or {}).get("champion")
    if not champion:
        return None
    why = f" — {champion['why']}" if champion.get("why") else ""
    return f"Champion: **{champion['model']} v{champion['version']}** ({champion['kind']}){why}."


def same_model(champion: dict) -> set[str]:
    """What a response's ``model_version`` says for this champion (``ModelSpec.label``: kind-vN, or the bare N)."""
    version = str(champion.get("version"))
    return {version, f"v{version}", f"{champion.get('kind', 'lstm')}-v{version}"}


def fan_chart(history: pd.DataFrame, forecast: dict, close: float) -> go.Figure:
    """The last closes, then the forecast's bands to its longest horizon (or the next day's interval alone)."""
    figure = go.Figure()
    days = history["timestamp"].dt.tz_localize(None) if history["timestamp"].dt.tz else history["timestamp"]
    figure.add_trace(go.Scatter(x=days, y=history["close"], name="close (last 90 days)",
                                line={"color": "#333333", "width": 1.6}))  # fmt: skip
    horizons = forecast.get("horizons")
    if horizons is None:
        tomorrow = pd.Timestamp(forecast["as_of"])
        figure.add_trace(go.Scatter(
            x=[tomorrow], y=[forecast["predicted_close"]], mode="markers", name="next day: median, 10–90 %",
            marker={"color": "#1f77b4", "size": 9, "symbol": "diamond"},
            error_y={"type": "data", "symmetric": False, "array": [forecast["upper"] - forecast["predicted_close"]],
                     "arrayminus": [forecast["predicted_close"] - forecast["lower"]]},
        ))  # fmt: skip
    else:
        frame = data.fan_frame(horizons, history["timestamp"].iloc[-1], close)
        levels = {round(float(c), 4): c for c in frame.columns if isinstance(c, float)}
        for (low, high), alpha in (((0.05, 0.95), 0.12), ((0.1, 0.9), 0.2), ((0.25, 0.75), 0.32)):
            if low in levels and high in levels:
                figure.add_trace(go.Scatter(x=frame["date"], y=frame[levels[high]], line={"width": 0},
                                            showlegend=False, hoverinfo="skip"))  # fmt: skip
                figure.add_trace(go.Scatter(
                    x=frame["date"], y=frame[levels[low]], fill="tonexty", line={"width": 0},
                    fillcolor=f"rgba(31,119,180,{alpha})", name=f"{low:.0%}–{high:.0%}",
                    hovertemplate=f"{low:.0%}: $%{{y:,.0f}}<extra></extra>",
                ))  # fmt: skip
        if 0.5 in levels:
            median = frame[levels[0.5]]
            figure.add_trace(go.Scatter(x=frame["date"], y=median, name="median",
                                        line={"color": "#1f77b4", "width": 2, "dash": "dash"}))  # fmt: skip
            served = frame[frame["served"]]
            figure.add_trace(go.Scatter(
                x=served["date"], y=served[levels[0.5]], mode="markers+text", name="served horizons",
                marker={"symbol": "diamond", "size": 10, "color": "#d62728"},
                text=[f"{d} d" for d in served["day"]], textfont={"color": "#d62728", "size": 12},
                textposition=["top left", *["bottom right"] * (len(served) - 2), "top center"][-len(served) :],
            ))  # fmt: skip
    figure.add_vline(x=days.iloc[-1], line={"color": "gray", "width": 1, "dash": "dot"})
    legend = {"orientation": "h", "yanchor": "top", "y": -0.14, "x": 0, "traceorder": "normal"}  # below the ticks
    figure.update_layout(height=500, margin={"t": 30, "b": 20, "l": 10, "r": 10}, yaxis_title="USD",
                         yaxis_tickformat="$,.0f", hovermode="x unified", legend=legend)  # fmt: skip
    return figure


def risk_view(risk: pd.DataFrame) -> pd.DataFrame:
    """The risk table for reading: one column per horizon, one row per figure, formatted."""
    rows: dict[str, list[str]] = {}
    if risk["date"].notna().all():
        rows["date"] = list(risk["date"])
    for column in ("VaR 95 %", "ES 95 %", "P(rise ≥ 5 %)", "P(fall ≥ 5 %)", "P(rise ≥ 10 %)", "P(fall ≥ 10 %)"):
        if column in risk:
            rows[column] = [f"{v:.1%}" for v in risk[column]]
    if {"range low (68 %)", "range high (68 %)"} <= set(risk):
        bounds = zip(risk["range low (68 %)"], risk["range high (68 %)"], strict=True)
        rows["range (68 %)"] = [f"${lo / 1000:,.1f}k – {hi / 1000:,.1f}k" for lo, hi in bounds]
    names = [f"{h} day" if h == 1 else f"{h} days" for h in risk["horizon"]]
    return pd.DataFrame(rows, index=names).T


def calibration_section() -> None:
    """Calibration so far (the monitor's ledgers: the model on ingested days, never a client's bars)."""
    st.subheader("Calibration so far")
    found = data.calibration(settings())
    table = found["table"]
    if table is None:
        st.caption("No forecast has closed yet: `make drift` keeps the ledger of the champion's forecasts on the "
                   "ingested days, and each closes when its day's bar arrives.")  # fmt: skip
        return
    shown = table.assign(
        horizon=[f"{h} day" if h == 1 else f"{h} days" for h in table["horizon"]],
        **{c: [("—" if pd.isna(v) else f"{v:.1%}") for v in table[c]]
           for c in ("inside 10–90 %", "below q10", "above q90", "nominal")},
    ).rename(columns={"closed": "closed forecasts", "open": "still open"})  # fmt: skip
    st.table(shown.set_index("horizon"))
    note = (" Only the next day's ledger exists so far: the longer horizons have not closed yet."
            if found["source"] == "next day" else "")  # fmt: skip
    st.caption("Share of closed forecasts whose realised log return fell inside the 10–90 % interval (80 % when "
               "calibrated), below it and above it; a forecast h days ahead closes h days after its origin."
               + note)  # fmt: skip
    rolling = found["rolling"]
    if rolling is not None and len(rolling) >= 2:
        st.caption("Next day: coverage of the 80 % interval over time (rolling 60 days)")
        st.line_chart(rolling.set_index("day"), y_label="coverage", height=220)


def model_page() -> None:
    st.header("Model")
    state = data.published(settings())
    champion = (state or {}).get("champion")
    if champion:
        st.write(f"{champion_line(state)} Published by run `{state['run_id']}` at {state['published_at']}.")
    registry = cached_registry(key())
    if isinstance(registry, data.Missing):
        missing(registry)
    else:
        if not champion:
            current = registry["champion"]
            st.write(f"Champion: **v{current}**" if current else "No champion registered yet.")
        st.subheader("Registry")
        st.dataframe(registry["versions"], hide_index=True, use_container_width=True)
    result = data.evaluation(settings())
    if isinstance(result, data.Missing):
        missing(result)
        return
    from bitpredict.evaluation.report import markdown_table

    st.subheader("Walk-forward evaluation (latest run)")
    st.markdown(markdown_table(result, result["decision"]))
    blocks = pd.DataFrame(result.get("blocks", []))
    if not blocks.empty:
        st.caption("Refits: " + ", ".join(f"{b.first_day}→{b.last_day}" for b in blocks.itertuples()))
    for name, png in data.evaluation_plots(settings()).items():
        st.image(png, caption=name.replace("_", " "))


def sentiment_page() -> None:
    st.header("Sentiment")
    found = data.sentiment(settings())
    if isinstance(found, data.Missing):
        missing(found)
        return
    daily, scores = found
    if daily.empty:
        st.info(
            "This data has no news or tweets, so every forecast used the neutral sentiment default. "
            "`make run DATA=../shared/data` adds 7,500 news texts (2021-10 → 2022-07); `make run SOURCES=live` "
            "reads the RSS feeds (and X, with BITPREDICT_TWITTER_BEARER_TOKEN)."
        )
        return
    bars = cached_market(key())
    figure = make_subplots(specs=[[{"secondary_y": True}]])
    for column in [c for c in daily.columns if c.endswith("_vader_mean")]:
        figure.add_trace(go.Scatter(x=daily["timestamp"], y=daily[column], name=column, mode="lines"))
    if not isinstance(bars, data.Missing) and not daily.empty:
        span = bars[(bars["timestamp"] >= daily["timestamp"].min()) & (bars["timestamp"] <= daily["timestamp"].max())]
        figure.add_trace(go.Scatter(x=span["timestamp"], y=span["close"], name="close", line={"color": "gray"}),
                         secondary_y=True)  # fmt: skip
    figure.update_layout(height=420, margin={"t": 20})
    st.plotly_chart(figure, use_container_width=True, key="sentiment-chart")
    latest = data.headlines(settings(), scores)
    shown = [c for c in ("timestamp", "title", "text", "source", "vader_compound", "finbert_score") if c in latest]
    st.subheader("Latest headlines")
    st.dataframe(latest[shown], hide_index=True, use_container_width=True)


def replay_section() -> None:
    """The last replay (``make replay``): months of the operating loop on real days, in one plot and its figures."""
    st.subheader("Replay")
    summary = data.replay(settings())
    if isinstance(summary, data.Missing):
        # optional, not a broken step of the loop: an invitation rather than a "to fix it" box
        st.caption(f"No replay yet. `{summary.fix}` replays the daily loop (forecast, close, drift check, rerun) "
                   "over past days of your data and shows it here.")  # fmt: skip
        return
    skill = summary.get("live_skill")
    reruns, episodes = summary["reruns"]["count"], summary["drift_episodes"]["count"]
    changes = [c for c in summary["champion_changes"] if not c.get("initial") and c.get("switched", True)]
    cols = st.columns(4)
    cols[0].metric("Days replayed", f"{summary['days']}", help=f"{summary['from']} → {summary.get('last_day')}")
    cols[1].metric("Live skill vs persistence", "n/a" if skill is None else f"{skill:+.4f}")
    cols[2].metric("Drift episodes / reruns", f"{episodes} / {reruns}")
    cols[3].metric("Champion changes", f"{len(changes)}")
    if summary.get("plot"):
        st.image(summary["plot"], caption="Live error vs persistence, drift share, reruns and champion changes")
    st.caption(f"{summary['forecasts']} forecasts ({summary['closed_forecasts']} closed) on {summary['data']}; "
               "the replay keeps its own registry and models, never the published run's.")  # fmt: skip


def monitoring_page() -> None:
    st.header("Monitoring")
    st.subheader("Services")
    st.dataframe(cached_health(key()), hide_index=True, use_container_width=True)
    state = data.published(settings())
    if state:
        champion = state.get("champion") or {}
        st.caption(f"Published state: run `{state['run_id']}` at {state['published_at']}"
                   + (f", champion v{champion['version']} ({champion['kind']})" if champion else ""))  # fmt: skip
    replay_section()
    result = data.drift(settings())
    if isinstance(result, data.Missing):
        missing(result)
        return
    monitor = result.get("forecast_monitor") or {}
    calibration = result.get("live_calibration") or {}
    st.subheader("Forecast monitor")
    cols = st.columns(4)
    cols[0].metric("Calibration", "BROKEN" if monitor.get("calibration_broken") else "holds",
                   help="Per-tail Kupiec test of the 80 % interval's misses over the monitored window")  # fmt: skip
    cols[1].metric("Pinball vs persistence + EWMA", "WORSE" if monitor.get("pinball_worse_than_naive") else "no alarm",
                   help="One-sided CUSUM of the daily pinball difference")  # fmt: skip
    if "coverage_80" in calibration:
        cols[2].metric("80 % coverage (monitored days)", f"{calibration['coverage_80']:.1%}",
                       delta=f"with ACI {calibration['coverage_80_aci']:.1%}", delta_color="off")  # fmt: skip
    levels = calibration.get("levels") or {}
    if levels:
        cols[3].metric("Served levels (ACI)", " / ".join(f"{float(v):.3f}" for v in levels.values()),
                       help="Adaptive conformal levels the transformer serves the nominal tails at: "
                       + ", ".join(f"{k} → {float(v):.3f}" for k, v in levels.items()))  # fmt: skip
    for tail, figures in (monitor.get("tails") or {}).items():
        st.caption(f"{tail}: {figures['observed']:.1%} misses vs {figures['expected']:.0%} expected, lowest Kupiec p "
                   f"{figures['min_kupiec_p']:.3g} (cut {figures['cut']:.3g}), Christoffersen p "
                   f"{figures['christoffersen_p']:.3g}")  # fmt: skip
    longer = {h: f for h, f in (monitor.get("horizons") or {}).items() if h != "1" and f.get("closed")}
    if longer:
        st.caption("Longer horizons, each closed on its day (reported; the alarms watch the next day): " + "; ".join(
            f"{h} days {f['coverage_80']:.1%} inside the 80 % interval of {f['closed']} closed (Kupiec p "
            f"{f['kupiec_p']:.2f} on {f['independent']} non-overlapping)" for h, f in longer.items()))  # fmt: skip
    coverage = result.get("coverage")
    if coverage is not None and len(coverage) >= 2:
        st.caption("Coverage of the champion's 80 % interval over time (its forecasts on the ingested days)")
        st.line_chart(coverage.set_index("day"), y_label="coverage")
    st.subheader("Input drift")
    share = "n/a" if result.get("share") is None else f"{result['share']:.0%}"
    st.metric("Columns drifted (latest check)", share, help=f"Against the days just before the window "
              f"({result.get('input_reference')})")  # fmt: skip
    version = f"model v{result['model_version']}" if result.get("model_version") else "the served model"
    checked = pd.Timestamp(result["checked_at"]).strftime("%Y-%m-%d %H:%M UTC")
    st.write(f"Checked {version} at {checked} on {result.get('current_rows', '?')} current rows: "
             + "; ".join(result["reasons"]))  # fmt: skip
    rerun = result.get("rerun")
    if rerun is not None:
        if rerun.get("ok"):
            verdict = {True: "it brought a new champion", False: "the champion stayed",
                       None: "the champion is decided when it ends"}[rerun.get("new_champion")]  # fmt: skip
            st.success(f"Drift triggered a {rerun.get('mode', '')} rerun of the last run: `{rerun.get('run_id')}` "
                       f"succeeded; {verdict}.")  # fmt: skip
        else:
            st.warning(f"Drift triggered a rerun, which failed: {rerun.get('error')}")
    elif result.get("triggered"):
        st.warning("This drift episode calls for a rerun; the check ran without a trigger (e.g. `--no-trigger`).")
    else:
        st.write("No rerun triggered by the latest check.")
    history = result["history"]
    if len(history) >= 2:  # one check is a number (above), not a line
        st.caption("Share of input columns drifted, per check")
        st.line_chart(history.set_index("checked_at")["share"], y_label="share drifted")
    if result.get("html"):
        import streamlit.components.v1 as components

        components.html(result["html"], height=700, scrolling=True)


def main() -> None:
    st.set_page_config(page_title="BitPredict", page_icon="₿", layout="wide")
    st.sidebar.title("BitPredict")
    asked = st.query_params.get("page", PAGES[0])  # ?page=Model opens a page directly (links, screenshots)
    asked = RENAMED.get(asked, asked)
    page = st.sidebar.radio("Page", PAGES, index=PAGES.index(asked) if asked in PAGES else 0, key="page")
    try:
        {"Market": market_page, "Forecast": forecast_page, "Model": model_page, "Sentiment": sentiment_page,
         "Monitoring": monitoring_page}[page]()  # fmt: skip
    except Exception as exc:  # a page must never show a traceback: say what failed, log the rest
        import logging

        logging.getLogger("bitpredict.ui").exception("page failed")
        st.error(f"This page could not be shown ({type(exc).__name__}: {exc}). The server log has the details.")


main()
