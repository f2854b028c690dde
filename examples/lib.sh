# Helpers shared by the scripts under examples/ that start servers and proxies (sourced).

# A free TCP port on 127.0.0.1 (the kernel's pick, released at once).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until $1 answers 200 on /hello (curl's further arguments after it).
await_up() {
    local url=$1
    shift
    for _ in $(seq 100); do
        [ "$(curl -s -o /dev/null --max-time 1 -w '%{http_code}' "$@" "$url/hello")" = 200 ] && return 0
        sleep 0.1
    done
    echo "no answer from $url" >&2
    return 1
}
