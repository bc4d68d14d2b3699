#!/usr/bin/env bash
# Two services, one causation tree: orders (FastAPI + worker) and inventory (worker),
# separate processes sharing a PostgreSQL message store and a Redis broker.
#
#   examples/two_services/run.sh
#
# 1. creates its own databases (a unique name: the shared store, orders', inventory's)
#    and uses its own Redis key prefix;
# 2. starts the inventory worker, the orders worker and the orders web app (uvicorn on
#    a free port of 127.0.0.1);
# 3. sends one order with an X-Correlation-ID;
# 4. waits for the chain to come back to orders (OrderConfirmed), and prints
#    `cqrs trace` of it: one tree, each node naming the service that recorded it;
# 5. stops every process it started and drops what it created, also on failure.
#
# Exits 0 only if the chain went orders -> inventory -> orders.
#
# Settings: PG_ADMIN_URL (postgresql://postgres@127.0.0.1:5432/postgres), REDIS_URL
# (redis://127.0.0.1:6379/0), PYTHON and CQRS (the repository's .venv by default),
# TIMEOUT (seconds to wait for the chain, 20), SKU and QUANTITY (what is ordered: BOOK-1,
# 2; the stock holds 100 BOOK-1 and 500 PEN-2, so QUANTITY=200 shows a chain that fails
# in inventory), KEEP=1 keeps the databases and the logs.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
CQRS="${CQRS:-$ROOT/.venv/bin/cqrs}"
PG_ADMIN_URL="${PG_ADMIN_URL:-postgresql://postgres@127.0.0.1:5432/postgres}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
TIMEOUT="${TIMEOUT:-20}"
SKU="${SKU:-BOOK-1}"
QUANTITY="${QUANTITY:-2}"

RUN="twosvc_$(date +%s)_$$_$RANDOM"
DATABASES=("${RUN}_store" "${RUN}_orders" "${RUN}_inventory")
export REDIS_PREFIX="$RUN:"
LOGS="$(mktemp -d "${TMPDIR:-/tmp}/two-services.XXXXXX")"
PIDS=()

admin() { "$PYTHON" "$HERE/admin.py" "$@"; }
say() { printf '== %s\n' "$*"; }

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ "${KEEP:-0}" == 1 ]]; then
        say "kept: databases ${DATABASES[*]}, logs in $LOGS"
    else
        admin drop-databases "$PG_ADMIN_URL" "${DATABASES[@]}" || true
        admin delete-keys "$REDIS_URL" "$REDIS_PREFIX" || true
        if [[ $status -ne 0 ]]; then
            for log in "$LOGS"/*.log; do
                [[ -e "$log" ]] && { say "$(basename "$log")"; tail -n 30 "$log"; }
            done
        fi
        rm -rf "$LOGS"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...: until COMMAND succeeds
    local seconds=$1 what=$2 deadline
    shift 2
    deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        for pid in "${PIDS[@]}"; do
            if ! kill -0 "$pid" 2>/dev/null; then
                say "FAILED: a process ended before $what (see its log below)"
                return 1
            fi
        done
        if ((SECONDS >= deadline)); then
            say "FAILED: $what did not happen within $seconds s"
            return 1
        fi
        sleep 0.2
    done
}

say "databases ${DATABASES[*]}; Redis keys under $REDIS_PREFIX"
admin create-databases "$PG_ADMIN_URL" "${DATABASES[@]}"
export CQRS_STORE_URL="$(admin database-url "$PG_ADMIN_URL" "${RUN}_store")"
export ORDERS_DATABASE_URL="$(admin database-url "$PG_ADMIN_URL" "${RUN}_orders")"
export INVENTORY_DATABASE_URL="$(admin database-url "$PG_ADMIN_URL" "${RUN}_inventory")"

cd "$HERE"
"$CQRS" worker inventory:worker --grace 10 >"$LOGS/inventory-worker.log" 2>&1 &
PIDS+=($!)
"$CQRS" worker orders:worker --grace 10 >"$LOGS/orders-worker.log" 2>&1 &
PIDS+=($!)
PORT="$(admin free-port)"
"$PYTHON" -m uvicorn orders:app --host 127.0.0.1 --port "$PORT" >"$LOGS/orders-app.log" 2>&1 &
PIDS+=($!)

wait_for 30 "the inventory worker started" grep -q "worker inventory started" "$LOGS/inventory-worker.log"
wait_for 30 "the orders worker started" grep -q "worker orders started" "$LOGS/orders-worker.log"
wait_for 30 "the orders app answered" curl -sf "http://127.0.0.1:$PORT/health"
say "inventory worker, orders worker and orders app (http://127.0.0.1:$PORT) are up"

CORRELATION="checkout-$RUN"
say "POST /orders with X-Correlation-ID: $CORRELATION"
curl -sf -X POST "http://127.0.0.1:$PORT/orders" \
    -H "X-Correlation-ID: $CORRELATION" -H "X-User: ada@example.com" \
    -H "content-type: application/json" -d "{\"sku\": \"$SKU\", \"quantity\": $QUANTITY}"
echo

chain_came_back() {
    "$CQRS" trace "$CORRELATION" --json >"$LOGS/trace.json" 2>/dev/null \
        && grep -q '"orders.OrderConfirmed"' "$LOGS/trace.json"
}
if ! wait_for "$TIMEOUT" "the chain's OrderConfirmed" chain_came_back; then
    say "cqrs trace $CORRELATION (so far)"
    "$CQRS" trace "$CORRELATION" || true
    exit 1
fi

say "cqrs trace $CORRELATION"
"$CQRS" trace "$CORRELATION"

CROSSINGS="$(admin crossings "$LOGS/trace.json")"
if [[ "$CROSSINGS" != "orders inventory orders" ]]; then
    say "FAILED: the chain went through: $CROSSINGS (expected: orders inventory orders)"
    exit 1
fi
say "the chain crossed both services: ${CROSSINGS// / -> }"
