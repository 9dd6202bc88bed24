#!/usr/bin/env bash
# Builds the repository's Dockerfile, unmodified, with podman and runs the
# image the way users do (docs/deploy.md "Run the container"); .ci/run calls it.
#
# No container registry is reachable here, so the two base images are local
# stand-ins built first:
#   golang:1.26-bookworm                     a debootstrap --variant=minbase bookworm
#                                            root with this machine's Go and CA bundle
#   gcr.io/distroless/static-debian12:nonroot  a minimal root: passwd/group with
#                                            nonroot 65532, /tmp 1777, CA bundle, zoneinfo
# The build runs with the host's network (the Go module proxy) and GOPROXY.
# The image is then run with --network=host on 127.0.0.1 ports only, against
# a fake Entra + Graph on loopback (e2e/container, a Go test).
#
# Everything it creates (images, containers, volumes, the build cache) lives
# under one temporary directory, removed at exit. Outside CI (CI unset) it
# skips with a message when podman cannot be installed; in CI it must run.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

t0=$SECONDS
step() { echo "== container: $* (at $((SECONDS - t0))s)"; }
skip() {
	if [ "${CI:-}" = true ]; then
		echo "container test: $*" >&2
		exit 1
	fi
	echo "container test SKIPPED: $* (it runs in CI; see scripts/container-test.sh)"
	exit 0
}

if [ "$(id -u)" != 0 ]; then
	skip "needs root (podman with runc, debootstrap, apt-get)"
fi

step "install podman, buildah, debootstrap"
pkgs=(podman buildah runc crun uidmap fuse-overlayfs slirp4netns netavark aardvark-dns iptables catatonit debootstrap)
if ! command -v podman >/dev/null || ! command -v debootstrap >/dev/null || ! command -v runc >/dev/null; then
	if ! { DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${pkgs[@]}" >/tmp/container-test-apt.log 2>&1 ||
		{ apt-get update >>/tmp/container-test-apt.log 2>&1 &&
			DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${pkgs[@]}" >>/tmp/container-test-apt.log 2>&1; }; }; then
		tail -20 /tmp/container-test-apt.log >&2
		skip "cannot install podman from Debian"
	fi
fi
podman --version

# What podman writes outside its configured places, when the run creates it:
# the image blob info cache (root's is fixed) and /run/containers.
created=()
for d in /var/lib/containers /run/containers; do
	[ -e "$d" ] || created+=("$d")
done
work=$(mktemp -d "${TMPDIR:-/tmp}/calpresence-container.XXXXXX")
mkdir -p "$work/tmp" "$work/storage" "$work/run" "$work/conf"
# Keep every piece of podman's state under $work: storage, runtime state,
# buildah's cache mounts (under TMPDIR) and the configuration.
cat >"$work/conf/containers.conf" <<EOF
[engine]
# crun fails on these machines; runc works.
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$work/run/events.log"
volume_path = "$work/storage/volumes"
static_dir = "$work/storage/libpod"
tmp_dir = "$work/run/libpod"
[network]
network_backend = "netavark"
network_config_dir = "$work/conf/networks"
EOF
cat >"$work/conf/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$work/storage"
runroot = "$work/run"
EOF
cat >"$work/conf/registries.conf" <<EOF
unqualified-search-registries = ["docker.io"]
short-name-mode = "permissive"
EOF
export CONTAINERS_CONF=$work/conf/containers.conf
export CONTAINERS_STORAGE_CONF=$work/conf/storage.conf
export CONTAINERS_REGISTRIES_CONF=$work/conf/registries.conf
export TMPDIR=$work/tmp

cleanup() {
	local rc=$?
	set +e
	if [ -n "${CALPRESENCE_CONTAINER_KEEP:-}" ]; then
		echo "kept $work: export CONTAINERS_CONF=$CONTAINERS_CONF CONTAINERS_STORAGE_CONF=$CONTAINERS_STORAGE_CONF CONTAINERS_REGISTRIES_CONF=$CONTAINERS_REGISTRIES_CONF TMPDIR=$TMPDIR"
		exit $rc
	fi
	step "clean up"
	podman rm -af -t 0 >/dev/null 2>&1
	podman volume prune -f >/dev/null 2>&1
	podman system reset -f >/dev/null 2>&1
	# Anything still mounted under $work (overlay layers) goes before the files.
	grep -o " $work[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null
	rm -rf "$work" "${created[@]}"
	echo "== container: done in $((SECONDS - t0))s, exit $rc"
	exit $rc
}
trap cleanup EXIT

# The podman flags these machines need: runc's default ulimits fail here.
ulimits=(--ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit "nproc=$(cat /proc/sys/kernel/pid_max):$(cat /proc/sys/kernel/pid_max)")

step "build the golang:1.26-bookworm stand-in (debootstrap minbase)"
mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
mirror=${mirror:-http://deb.debian.org/debian}
debootstrap --variant=minbase bookworm "$work/golang-root" "$mirror" >"$work/debootstrap.log" 2>&1 ||
	{ tail -20 "$work/debootstrap.log" >&2; exit 1; }
goroot=$(go env GOROOT)
cp -a "$goroot" "$work/golang-root/usr/local/go"
mkdir -p "$work/golang-root/go" "$work/golang-root/etc/ssl/certs"
cp /etc/ssl/certs/ca-certificates.crt "$work/golang-root/etc/ssl/certs/ca-certificates.crt"
tar -C "$work/golang-root" -c . | podman import -q \
	--change 'ENV PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
	--change 'ENV GOPATH=/go' --change 'ENV GOTOOLCHAIN=local' --change 'WORKDIR /go' \
	- docker.io/library/golang:1.26-bookworm >/dev/null
rm -rf "$work/golang-root"

step "build the distroless/static-debian12:nonroot stand-in"
r=$work/static-root
mkdir -p "$r/etc/ssl/certs" "$r/usr/share" "$r/tmp" "$r/home/nonroot" "$r/root"
chmod 1777 "$r/tmp"
chmod 700 "$r/root"
chown 65532:65532 "$r/home/nonroot"
cat >"$r/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
cat >"$r/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
tty:x:5:
staff:x:50:
nonroot:x:65532:
EOF
echo 'hosts: files dns' >"$r/etc/nsswitch.conf"
cp /etc/ssl/certs/ca-certificates.crt "$r/etc/ssl/certs/ca-certificates.crt"
cp -a /usr/share/zoneinfo "$r/usr/share/zoneinfo"
tar -C "$r" -c . | podman import -q \
	--change 'USER 65532' --change 'WORKDIR /home/nonroot' \
	--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
	--change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
	- gcr.io/distroless/static-debian12:nonroot >/dev/null
rm -rf "$r"

image=localhost/calpresence:container-test
# build TAG VERSION: podman build of the Dockerfile as it is, on the host's
# network (the Go module proxy) with the host's GOPROXY.
build() {
	if ! podman build --pull=never --network=host "${ulimits[@]}" \
		--build-arg "GOPROXY=$(go env GOPROXY)" --build-arg "VERSION=$2" \
		-t "$1" -f Dockerfile . >"$work/build.log" 2>&1; then
		tail -n 40 "$work/build.log" >&2
		exit 1
	fi
	grep -E '^(\[[0-9]/[0-9]\] STEP|Successfully tagged)' "$work/build.log" | tail -n 3
}
step "build the Dockerfile (cold)"
b0=$SECONDS
build "$image" container-test
cold=$((SECONDS - b0))

# A second build whose compile step must run again (another VERSION):
# with the Go build cache mount it only relinks.
step "build again with another VERSION (warm Go build cache)"
b0=$SECONDS
build "$image-2" container-test-2
warm=$((SECONDS - b0))
podman rmi "$image-2" >/dev/null

# The state directory: nonroot's and group 0's, group-writable (g=u).
mnt=$(podman image mount "$image")
mode=$(stat -c '%a %u:%g' "$mnt/var/lib/calpresence")
podman image umount "$image" >/dev/null
echo "image /var/lib/calpresence: mode and owner $mode"
if [ "$mode" != "775 65532:0" ]; then
	echo "want 775 65532:0" >&2
	exit 1
fi
size=$(podman image inspect --format '{{.Size}}' "$image")
echo "container build: cold ${cold}s, rebuild with a warm cache ${warm}s, image $((size / 1000000)) MB"

step "run the image (e2e/container)"
CALPRESENCE_CONTAINER_IMAGE=$image CALPRESENCE_CONTAINER_ULIMITS="${ulimits[*]}" \
	go test -count=1 -v -timeout 10m ./e2e/container/ 2>&1 | tee "$work/test.log" | grep -E '^(=== RUN|--- |PASS|FAIL|ok|\s+container_test)' || true
if ! grep -q '^ok' "$work/test.log"; then
	cat "$work/test.log"
	exit 1
fi
