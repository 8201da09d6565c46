#!/usr/bin/env bash
# Build the project's three images with buildah — no Docker daemon — from the same Dockerfiles `make images` uses,
# then start each one and check it answers.
#
# Why this exists: CI machines and laptops without a Docker engine (and, here, without Docker Hub) can still prove
# the Dockerfiles build and the images run. Docker Hub's python:3.11.11-slim-bookworm cannot be pulled where only
# the package registries are reachable, so the base is made from Debian bookworm's own packages with debootstrap
# (Python 3.11.2, the same Debian release the slim image is built on) and passed in as BASE_IMAGE; nothing else
# in the Dockerfiles changes. Where Docker Hub is reachable, BASE_IMAGE=python:3.11.11-slim-bookworm uses it.
#
#   scripts/build_images_daemonless.sh [components|inference|ui ...]      (default: all three)
#
# Settings (environment):
#   BASE_IMAGE      base to build on; default: localhost/bitpredict-base:3.11-bookworm, made here when missing
#   TAG             image tag; default: the package version
#   WHEELS          a local wheel folder offered to pip (PIP_FIND_LINKS) during the build, e.g. a CPU torch wheel
#   TORCH_INDEX_URL where torch's CPU wheel comes from; default: the Dockerfile's (download.pytorch.org)
#   CA_BUNDLE       a CA bundle to trust inside the locally made base (a TLS-inspecting proxy's); default: none
#   STORAGE_DRIVER  buildah storage driver; default: overlay where the kernel allows it, else vfs
#   MODEL_DIR, BARS a model dir and a daily-bars parquet: the inference image then serves one real v2 request
# Needs root (or a rootless buildah set-up), buildah and debootstrap: apt-get install buildah debootstrap.
set -euo pipefail
cd "$(dirname "$0")/.."

images=("$@")
[ ${#images[@]} -eq 0 ] && images=(components inference ui)
TAG="${TAG:-$(.venv/bin/python -c 'import bitpredict; print(bitpredict.__version__)' 2>/dev/null || echo 0.1.0)}"
LOCAL_BASE="localhost/bitpredict-base:3.11-bookworm"
BASE_IMAGE="${BASE_IMAGE:-$LOCAL_BASE}"
export BUILDAH_ISOLATION="${BUILDAH_ISOLATION:-chroot}"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

for tool in buildah curl; do
    command -v "$tool" >/dev/null || die "$tool is not installed (apt-get install buildah curl)"
done

if [ -z "${STORAGE_DRIVER:-}" ]; then
    # overlay needs a kernel that lets this user mount it; vfs always works but copies every layer whole.
    if buildah --storage-driver overlay info >/dev/null 2>&1; then STORAGE_DRIVER=overlay; else STORAGE_DRIVER=vfs; fi
fi
export STORAGE_DRIVER
say "buildah $(buildah --version | awk '{print $3}'), storage driver $STORAGE_DRIVER, isolation $BUILDAH_ISOLATION"

image_name() {  # the names `make images` gives them
    case "$1" in
        components) echo "ghcr.io/bitpredict/bitpredict-components:$TAG" ;;
        inference) echo "ghcr.io/bitpredict/bitpredict-inference:$TAG" ;;
        ui) echo "ghcr.io/bitpredict/bitpredict-ui:$TAG" ;;
        *) die "unknown image '$1' (components, inference or ui)" ;;
    esac
}

make_local_base() {
    # A slim Python 3.11 on Debian bookworm, from Debian's mirror: what python:3.11-slim-bookworm is, less pip's
    # own Python build. `python` is linked to python3 as in the official image.
    local rootfs ctr mnt
    command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap), or set BASE_IMAGE"
    rootfs="$(mktemp -d)"
    trap 'rm -rf "$rootfs"' RETURN
    say "making $LOCAL_BASE with debootstrap (bookworm minbase + python3, python3-venv, ca-certificates)"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$rootfs" \
        http://deb.debian.org/debian >/dev/null
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python"
    local pip_cert=()
    if [ -n "${CA_BUNDLE:-}" ]; then
        cp "$CA_BUNDLE" "$rootfs/etc/ssl/certs/ca-certificates.crt"
        pip_cert=(--env PIP_CERT=/etc/ssl/certs/ca-certificates.crt)
    fi
    ctr="$(buildah from scratch)"
    mnt="$(buildah mount "$ctr")"
    cp -a "$rootfs/." "$mnt/"
    buildah umount "$ctr" >/dev/null
    buildah config --env PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 \
        "${pip_cert[@]}" --cmd python3 --label org.opencontainers.image.description="bitpredict local base" "$ctr"
    buildah commit --quiet --rm "$ctr" "$LOCAL_BASE" >/dev/null
}

if [ "$BASE_IMAGE" = "$LOCAL_BASE" ] && ! buildah inspect --type image "$LOCAL_BASE" >/dev/null 2>&1; then
    make_local_base
fi

build_args=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
[ -n "${TORCH_INDEX_URL:-}" ] && build_args+=(--build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL")
if [ -n "${WHEELS:-}" ]; then
    build_args+=(--build-arg PIP_FIND_LINKS=/wheels --volume "$(realpath "$WHEELS"):/wheels:ro")
fi

# The checks run in each built image, as the image's own user (10001), on the host's network (chroot isolation).
wait_for() {  # wait_for URL: up to 120 s for a 200
    for _ in $(seq 60); do
        curl -fsS "$1" >/dev/null 2>&1 && return 0
        sleep 2
    done
    return 1
}

check_components() {
    buildah run "$1" -- bitpredict --version
    buildah run "$1" -- python -c "import components.train, pipelines.bitpredict_pipeline; print('components import')"
}

check_ui() {  # the Streamlit server starts with no data and answers its health check
    local pid ok=0
    buildah run "$1" -- streamlit run ui/app.py --server.address 127.0.0.1 --server.port 18501 >/dev/null 2>&1 &
    pid=$!
    wait_for http://127.0.0.1:18501/_stcore/health || ok=1
    pkill -f "server.port 18501" || true
    wait "$pid" 2>/dev/null || true
    return $ok
}

check_inference() {
    # Without a model: the serving code and TensorFlow import. With MODEL_DIR (a candidate or exported model)
    # and BARS (daily OHLCV parquet): the predictor and the transformer both run from the image and one v2
    # request through the transformer returns a forecast.
    buildah run "$1" -- python -c "import inference.transformer, inference.predictor, tensorflow as tf; print('tensorflow', tf.__version__)"
    [ -n "${MODEL_DIR:-}" ] && [ -n "${BARS:-}" ] || { say "MODEL_DIR/BARS unset: inference served no request"; return 0; }
    local model pids=() ok=0 reply
    model="$(realpath "$MODEL_DIR")"
    buildah run -v "$model:/model:ro" "$1" -- python -m inference.predictor --model_dir /model --host 127.0.0.1 \
        --http_port 18080 --grpc_port 18081 >/tmp/bitpredict-image-predictor.log 2>&1 &
    pids+=($!)
    buildah run -v "$model:/model:ro" "$1" -- python -m inference.transformer --model_uri /model --host 127.0.0.1 \
        --predictor_host 127.0.0.1:18080 --http_port 18090 --grpc_port 18091 >/tmp/bitpredict-image-transformer.log 2>&1 &
    pids+=($!)
    if wait_for http://127.0.0.1:18080/v2/models/bitpredict/ready &&
        wait_for http://127.0.0.1:18090/v2/models/bitpredict/ready; then
        if reply="$(.venv/bin/python -m inference.client "$BARS" --rows 200 |
            curl -sS --fail-with-body -H 'Content-Type: application/json' --data-binary @- \
                http://127.0.0.1:18090/v2/models/bitpredict/infer)"; then
            printf '%s' "$reply" | .venv/bin/python -c '
import json, sys
outs = {o["name"]: o["data"] for o in json.load(sys.stdin)["outputs"]}
print("forecast from the image:", {k: outs[k] for k in sorted(outs) if k != "attention"})
' || ok=1
        else
            say "the request failed: $reply"
            ok=1
        fi
    else
        say "the served model never became ready: see /tmp/bitpredict-image-{predictor,transformer}.log"
        ok=1
    fi
    pkill -f "port 1809[01]" || true
    pkill -f "port 1808[01]" || true
    wait "${pids[@]}" 2>/dev/null || true
    return $ok
}

for name in "${images[@]}"; do
    image="$(image_name "$name")"
    say "building $image from $name/Dockerfile on $BASE_IMAGE"
    start=$SECONDS
    buildah bud --layers --quiet --format docker -f "$name/Dockerfile" "${build_args[@]}" -t "$image" . >/dev/null
    say "built $image in $((SECONDS - start)) s; size $(buildah images --format '{{.Size}}' "$image" | head -1)"
    ctr="$(buildah from --quiet "$image")"
    "check_$name" "$ctr" || { buildah rm "$ctr" >/dev/null; die "$image was built but its check failed"; }
    buildah rm "$ctr" >/dev/null
    say "$image runs"
done
buildah images --filter reference='ghcr.io/bitpredict/*'
