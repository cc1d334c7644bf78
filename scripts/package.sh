#!/usr/bin/env bash
# Builds nkit's release artifacts into dist-pkg/ (or the directory given):
#   nkit-<version>.tgz        an npm package that installs offline on a host without a compiler or
#                             headers: every runtime dependency bundled, the N-API addon (libbpf linked
#                             in) and nkit-cni (static) prebuilt in prebuilds/linux-x64/, the BPF
#                             objects in bpf/build/;  npm install -g ./nkit-<version>.tgz
#   nkit_<version>_amd64.deb  the same tree in /usr/lib/nkit, nkitd and nkit in /usr/bin, nkit-cni in
#                             /opt/cni/bin, the unit, tmpfiles entry and a default config (see
#                             docs/operations.md, "Packages")
# The static libbpf is built with -fPIC from the upstream tarball Debian ships libbpf-dev from
# (checksum pinned), into a cache outside the repository; the host then needs only libelf and zlib.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${NKIT_CACHE:-/var/cache/nkit}
OUT=$(mkdir -p "${1:-$ROOT/dist-pkg}" && cd "${1:-$ROOT/dist-pkg}" && pwd)
LIBBPF_VERSION=1.4.6
LIBBPF_SHA256=d4cf3ee697d9bd959ad3c0f5c6757370a2559e54448761271e15a23c31c1082e
LIBBPF_URL=http://deb.debian.org/debian/pool/main/libb/libbpf/libbpf_${LIBBPF_VERSION}.orig.tar.gz

log() { printf '[package] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $(uname -m) == x86_64 ]] || die "packages are built on x86_64 (linux-x64) only"
command -v dpkg-deb >/dev/null || die "dpkg-deb is missing (apt install dpkg)"

# libbpf.a built with -fPIC (Debian's libbpf.a is not, so it cannot go into a shared object).
libbpf_static() {
  local dir=$CACHE/libbpf/pic-$LIBBPF_VERSION tar=$CACHE/libbpf/libbpf_$LIBBPF_VERSION.orig.tar.gz
  if [[ ! -f $dir/lib/libbpf.a ]]; then
    mkdir -p "$CACHE/libbpf"
    if [[ ! -f $tar ]]; then
      log "downloading $LIBBPF_URL"
      curl -fsSL --retry 3 -o "$tar.part" "$LIBBPF_URL"
      mv "$tar.part" "$tar"
    fi
    echo "$LIBBPF_SHA256  $tar" | sha256sum -c --quiet - || die "$tar: checksum mismatch"
    local src
    src=$(mktemp -d)
    tar -xzf "$tar" -C "$src" --strip-components=1
    rm -rf "$dir.part"
    make -s -C "$src/src" BUILD_STATIC_ONLY=1 OBJDIR="$src/obj" EXTRA_CFLAGS="-fPIC -O2" \
      DESTDIR="$dir.part" PREFIX=/ LIBDIR=/lib install >/dev/null
    mv "$dir.part" "$dir"
    rm -rf "$src"
  fi
  echo "$dir"
}

cd "$ROOT"
VERSION=$(node -p 'require("./package.json").version')
log "building nkit $VERSION"
npm run -s build >/dev/null
LIBBPF=$(libbpf_static)
make -s -C native BUILD=build-static LIBBPF_STATIC="$LIBBPF"
make -s -C native/cni BUILD=build-static LDFLAGS=-static

# The package tree: what runs, nothing that builds or tests.
STAGE=$OUT/stage/nkit
rm -rf "$OUT/stage" && mkdir -p "$STAGE/bpf/build" "$STAGE/prebuilds/linux-x64"
cp -r dist proto systemd README.md package.json package-lock.json "$STAGE/"
cp bpf/build/*.bpf.o "$STAGE/bpf/build/"
cp native/build-static/nkit.node native/cni/build-static/nkit-cni "$STAGE/prebuilds/linux-x64/"
node - "$STAGE/package.json" <<'EOF'
const { readFileSync, writeFileSync } = require("node:fs");
const file = process.argv[2];
const pkg = JSON.parse(readFileSync(file, "utf8"));
delete pkg.private;
delete pkg.scripts;
pkg.files = ["dist", "proto", "systemd", "bpf/build", "prebuilds", "README.md"];
pkg.bundleDependencies = Object.keys(pkg.dependencies);
pkg.os = ["linux"];
pkg.cpu = ["x64"];
writeFileSync(file, `${JSON.stringify(pkg, null, 2)}\n`);
EOF
(cd "$STAGE" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error --cache "$CACHE/npm" >/dev/null)
rm -f "$OUT"/nkit-*.tgz
(cd "$OUT" && npm pack --loglevel=error "$STAGE" >/dev/null)
log "wrote $OUT/nkit-$VERSION.tgz"

# The Debian package: the same tree, installed at the paths `nkit install` uses.
DEB=$OUT/stage/deb
mkdir -p "$DEB/DEBIAN" "$DEB/usr/lib" "$DEB/usr/bin" "$DEB/opt/cni/bin" "$DEB/lib/systemd/system" \
  "$DEB/usr/lib/tmpfiles.d" "$DEB/etc/nkit"
cp -a "$STAGE" "$DEB/usr/lib/nkit"
chmod 0755 "$DEB/usr/lib/nkit/dist/cli/main.js" "$DEB/usr/lib/nkit/dist/daemon/main.js"
ln -s ../lib/nkit/dist/cli/main.js "$DEB/usr/bin/nkit"
ln -s ../lib/nkit/dist/daemon/main.js "$DEB/usr/bin/nkitd"
install -m 0755 native/cni/build-static/nkit-cni "$DEB/opt/cni/bin/nkit-cni"
install -m 0644 systemd/nkitd.service "$DEB/lib/systemd/system/nkitd.service"
install -m 0644 systemd/nkit.tmpfiles.conf "$DEB/usr/lib/tmpfiles.d/nkit.conf"
install -m 0644 scripts/deb/nkitd.yaml "$DEB/etc/nkit/nkitd.yaml"
for f in postinst prerm postrm; do install -m 0755 "scripts/deb/$f" "$DEB/DEBIAN/$f"; done
echo /etc/nkit/nkitd.yaml >"$DEB/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$DEB" | cut -f1)
sed -e "s/@VERSION@/$VERSION/" -e "s/@SIZE@/$size/" scripts/deb/control >"$DEB/DEBIAN/control"
rm -f "$OUT"/nkit_*.deb
dpkg-deb --root-owner-group -Zxz --build "$DEB" "$OUT/nkit_${VERSION}_amd64.deb" >/dev/null
log "wrote $OUT/nkit_${VERSION}_amd64.deb"
rm -rf "$OUT/stage"
