# What the benchmark scripts share; sourced, with ADDR (host:port) set.

# Waits until something listens on $ADDR: up to $1 tenths of a second (100).
wait_for_port() {
    for _ in $(seq 1 "${1:-100}"); do
        (exec 3<>"/dev/tcp/${ADDR%:*}/${ADDR#*:}") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "server did not start on $ADDR" >&2
    exit 1
}

# Creates a server application NAME (default bench) with BIN in data dir DIR; prints its key.
app_key() { # BIN DIR [NAME]
    "$1" --data-dir "$2" apps create --name "${3:-bench}" 2>/dev/null |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])'
}

# Copies the store of a prefilled data dir ($1) into data dir $2, and waits
# until the copy is on disk: else the kernel writes it back during the run,
# and the server's fsyncs wait behind it.
copy_store() { # FROM TO
    cp "$1"/the-eye.db* "$2"/
    sync
}
