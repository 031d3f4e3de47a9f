# tls-fixture.sh, sourced by bench-tls.sh and bench-h3.sh: the objects
# (1k.bin, 64k.bin, 1m.bin, cacheable for an hour) served by `cdn origin`
# at $ORIGIN, and one ECDSA P-256 certificate for bench.test and 127.0.0.1
# in $work/cert.pem and $work/key.pem. The caller sets work, ORIGIN and
# pids (the origin's PID is added for its cleanup).
mkdir -p "$work/site"
head -c 1024 /dev/urandom >"$work/site/1k.bin"
head -c 65536 /dev/urandom >"$work/site/64k.bin"
head -c 1048576 /dev/urandom >"$work/site/1m.bin"
printf '/*\n  Cache-Control: public, max-age=3600\n' >"$work/site/_headers"
bin/cdn origin --dir "$work/site" --listen "$ORIGIN" --log-level warn &
pids+=($!)

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -keyout "$work/key.pem" -out "$work/cert.pem" -subj /CN=bench.test \
    -addext "subjectAltName=DNS:bench.test,IP:127.0.0.1" 2>/dev/null
