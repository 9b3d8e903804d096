#!/usr/bin/env bash
# Runs the Kafka-compatible broker (Tansu 0.6.0) that the end-to-end tests talk to.
#
#   scripts/kafka-broker.sh install                  build tansu 0.6.0 with sqlite storage (~20 min once)
#   scripts/kafka-broker.sh start                    start it on 127.0.0.1:$TOOLTRAIL_KAFKA_PORT (default 9092)
#   scripts/kafka-broker.sh stop                     stop it and delete its data
#   scripts/kafka-broker.sh status                   exit 0 if it is running and answering Kafka requests
#   scripts/kafka-broker.sh create-topic NAME [P]    create a topic with P partitions (default 4)
#   scripts/kafka-broker.sh env                      print `export TOOLTRAIL_TEST_KAFKA=...`, for eval
#
# Environment:
#   TOOLTRAIL_KAFKA_PORT   port to listen on (default 9092)
#   TOOLTRAIL_KAFKA_STATE  state dir holding the pid file, log and data dir path
#                          (default ~/.cache/tooltrail/kafka)
#
# Tansu facts this script relies on (0.6.0):
# - the storage engine needs the `libsql` feature; `sqlite://tansu.db` resolves against the working
#   directory (an absolute path gets doubled), so the broker is started from its data dir;
# - the `memory://` engine loses records when a fetch starts mid-batch, so it is not used;
# - it must listen and advertise on 127.0.0.1 (a `localhost` listener binds [::]);
# - `tansu topic create` exits 1 when the topic exists; `tansu topic list` prints JSON metadata.
set -euo pipefail

readonly TANSU_VERSION="0.6.0"
readonly PORT="${TOOLTRAIL_KAFKA_PORT:-9092}"
readonly STATE_DIR="${TOOLTRAIL_KAFKA_STATE:-$HOME/.cache/tooltrail/kafka}"
readonly PID_FILE="$STATE_DIR/tansu.pid"
readonly PORT_FILE="$STATE_DIR/tansu.port"
readonly DATA_FILE="$STATE_DIR/tansu.datadir"
readonly LOG_FILE="$STATE_DIR/tansu.log"
readonly START_TIMEOUT_SECS=60
readonly STOP_TIMEOUT_SECS=15
readonly DEFAULT_PARTITIONS=4

log() { echo "kafka-broker: $*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# The path of a tansu binary, or nothing.
find_tansu() {
    if command -v tansu >/dev/null 2>&1; then
        command -v tansu
    elif [[ -x "$HOME/.cargo/bin/tansu" ]]; then
        echo "$HOME/.cargo/bin/tansu"
    fi
}

# True if $1 is tansu $TANSU_VERSION built with the sqlite (libsql) storage engine.
tansu_is_usable() {
    local bin="$1"
    [[ -n "$bin" ]] || return 1
    [[ "$("$bin" --version 2>/dev/null)" == "tansu $TANSU_VERSION" ]] || return 1
    "$bin" --help 2>/dev/null | grep -q '^Storage engines:.*libsql'
}

cmd_install() {
    local bin
    bin="$(find_tansu)"
    if tansu_is_usable "$bin"; then
        return 0
    fi
    # A build started elsewhere (e.g. by another shell) would be duplicated by ours: wait for it.
    local other
    while other="$(pgrep -f 'cargo install tansu' | head -n1)" && [[ -n "$other" ]]; do
        log "a tansu build is already running (pid $other); waiting for it to finish"
        while kill -0 "$other" 2>/dev/null; do sleep 10; done
        bin="$(find_tansu)"
        if tansu_is_usable "$bin"; then
            return 0
        fi
    done
    if [[ -n "$bin" ]]; then
        log "$bin is not tansu $TANSU_VERSION with the libsql storage engine; reinstalling"
    fi
    log "building tansu $TANSU_VERSION with cargo install; this takes about 20 minutes"
    cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore,libsql
    bin="$(find_tansu)"
    tansu_is_usable "$bin" || die "cargo install finished but no usable tansu $TANSU_VERSION is on PATH or in ~/.cargo/bin"
}

tansu_bin() {
    local bin
    bin="$(find_tansu)"
    tansu_is_usable "$bin" || die "tansu $TANSU_VERSION is not installed; run: $0 install"
    echo "$bin"
}

# The port of the running broker, else the configured one.
current_port() {
    if [[ -f "$PORT_FILE" ]]; then cat "$PORT_FILE"; else echo "$PORT"; fi
}

broker_url() { echo "tcp://127.0.0.1:$(current_port)"; }

# The pid of our broker if it is alive and really is tansu.
running_pid() {
    [[ -f "$PID_FILE" ]] || return 1
    local pid
    pid="$(cat "$PID_FILE")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'tansu' || return 1
    echo "$pid"
}

# True if the broker answers a Metadata request (this goes through the storage engine).
answers() {
    local bin="$1"
    timeout 10 "$bin" topic list --broker "$(broker_url)" >/dev/null 2>&1
}

port_in_use() {
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

print_log_tail() {
    if [[ -f "$LOG_FILE" ]]; then
        log "last lines of $LOG_FILE:"
        tail -n 40 "$LOG_FILE" >&2
    fi
}

remove_data_dir() {
    [[ -f "$DATA_FILE" ]] || return 0
    local dir
    dir="$(cat "$DATA_FILE")"
    # Only ever delete a directory this script created.
    if [[ -d "$dir" && "$(basename "$dir")" == tooltrail-kafka.* ]]; then
        rm -rf -- "$dir"
    fi
    rm -f -- "$DATA_FILE"
}

cmd_start() {
    cmd_install
    local bin
    bin="$(tansu_bin)"
    mkdir -p "$STATE_DIR"

    local pid
    if pid="$(running_pid)"; then
        if answers "$bin"; then
            log "already running on 127.0.0.1:$(current_port) (pid $pid)"
            return 0
        fi
        die "tansu (pid $pid) is running but does not answer on $(broker_url); run: $0 stop"
    fi
    # A stale pid file from a broker that died: forget it and its data.
    rm -f -- "$PID_FILE" "$PORT_FILE"
    remove_data_dir

    if port_in_use "$PORT"; then
        log "port $PORT on 127.0.0.1 is taken by another process:"
        ss -ltnp "sport = :$PORT" >&2 2>/dev/null || true
        die "choose another port with TOOLTRAIL_KAFKA_PORT=<port>"
    fi

    # Tansu has been seen to exit at startup with a SQLite I/O error on a busy
    # machine (twice here, right after a heavy build); a fresh attempt a few
    # seconds later starts fine.
    local attempt
    for attempt in 1 2 3; do
        if launch "$bin"; then
            return 0
        fi
        if ((attempt < 3)); then
            log "retrying the broker start in $((2 * attempt))s (attempt $((attempt + 1)) of 3)"
            sleep $((2 * attempt))
        fi
    done
    die "tansu exited during startup three times"
}

# One attempt at starting the broker: 0 once it answers, 1 if it exited
# during startup; dies if it neither answers nor exits in time.
launch() {
    local bin="$1" pid
    local data_dir
    data_dir="$(mktemp -d "${TMPDIR:-/tmp}/tooltrail-kafka.XXXXXX")"
    echo "$data_dir" >"$DATA_FILE"
    echo "$PORT" >"$PORT_FILE"
    : >"$LOG_FILE"

    local url="tcp://127.0.0.1:$PORT"
    local started=$SECONDS
    # setsid + nohup: the broker outlives this script and the shell that ran it. The inner shell
    # writes its own pid and then execs tansu, so the pid file holds the broker's pid.
    setsid bash -c 'cd "$1" && echo $$ >"$2" && shift 2 && exec nohup "$@"' _ \
        "$data_dir" "$PID_FILE" \
        "$bin" broker \
        --listener-url "$url" \
        --advertised-listener-url "$url" \
        --storage-engine "sqlite://tansu.db" \
        --silent \
        >>"$LOG_FILE" 2>&1 </dev/null &

    local deadline=$((SECONDS + START_TIMEOUT_SECS))
    while ((SECONDS < deadline)); do
        if pid="$(running_pid)"; then
            if answers "$bin"; then
                log "started tansu $TANSU_VERSION on 127.0.0.1:$PORT (pid $pid, data $data_dir, log $LOG_FILE) in $((SECONDS - started))s"
                return 0
            fi
        elif [[ -f "$PID_FILE" ]]; then
            print_log_tail
            rm -f -- "$PID_FILE" "$PORT_FILE"
            remove_data_dir
            log "tansu exited during startup"
            return 1
        fi
        sleep 0.5
    done
    print_log_tail
    cmd_stop
    die "tansu did not answer Kafka requests on $url within ${START_TIMEOUT_SECS}s"
}

cmd_stop() {
    local pid
    if pid="$(running_pid)"; then
        kill -TERM "$pid"
        local deadline=$((SECONDS + STOP_TIMEOUT_SECS))
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
        if kill -0 "$pid" 2>/dev/null; then
            log "tansu (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT_SECS}s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
        fi
        log "stopped tansu (pid $pid)"
    else
        log "not running"
    fi
    rm -f -- "$PID_FILE" "$PORT_FILE"
    remove_data_dir
}

cmd_status() {
    local pid bin
    if ! pid="$(running_pid)"; then
        log "not running"
        return 1
    fi
    bin="$(tansu_bin)"
    if answers "$bin"; then
        log "running on 127.0.0.1:$(current_port) (pid $pid, data $(cat "$DATA_FILE" 2>/dev/null), log $LOG_FILE)"
        return 0
    fi
    log "tansu (pid $pid) is running but does not answer on $(broker_url)"
    return 1
}

cmd_create_topic() {
    local name="${1:-}" partitions="${2:-$DEFAULT_PARTITIONS}"
    [[ -n "$name" ]] || die "usage: $0 create-topic NAME [PARTITIONS]"
    [[ "$partitions" =~ ^[1-9][0-9]*$ ]] || die "PARTITIONS must be a positive integer, got '$partitions'"
    running_pid >/dev/null || die "the broker is not running; run: $0 start"
    local bin out
    bin="$(tansu_bin)"
    if out="$(timeout 30 "$bin" topic create "$name" --partitions "$partitions" --broker "$(broker_url)" 2>&1)"; then
        log "created topic $name with $partitions partitions"
        return 0
    fi
    # tansu exits 1 with TopicAlreadyExists when the topic is there already.
    local topics
    topics="$(timeout 10 "$bin" topic list --broker "$(broker_url)")" || die "cannot list topics on $(broker_url)"
    if command -v jq >/dev/null 2>&1; then
        local existing
        existing="$(jq -r --arg n "$name" '.[] | select(.name == $n) | .partitions | length' <<<"$topics")"
        [[ -n "$existing" ]] || die "could not create topic $name: $out"
        if [[ "$existing" != "$partitions" ]]; then
            die "topic $name already exists with $existing partitions, not $partitions"
        fi
        log "topic $name already exists with $partitions partitions"
    else
        grep -q "\"name\":\"$name\"" <<<"$topics" || die "could not create topic $name: $out"
        log "topic $name already exists"
    fi
}

cmd_env() {
    echo "export TOOLTRAIL_TEST_KAFKA=127.0.0.1:$(current_port)"
}

main() {
    local cmd="${1:-}"
    shift || true
    case "$cmd" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    create-topic) cmd_create_topic "$@" ;;
    env) cmd_env ;;
    *)
        sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2
        exit 2
        ;;
    esac
}

main "$@"
