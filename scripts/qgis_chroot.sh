#!/usr/bin/env bash
# The plugin suite on a chosen QGIS, in a Debian chroot built once per machine (make test-plugin QGIS=3.40|3.44).
#   scripts/qgis_chroot.sh build 3.44          debootstrap + QGIS packages, once (reused while its .built exists)
#   scripts/qgis_chroot.sh prefetch 3.44       the same in the background (a later build/test waits for it)
#   scripts/qgis_chroot.sh test  3.44 [ARGS]   mounts the checkout, runs tests/plugin inside, unmounts (also on failure)
#   scripts/qgis_chroot.sh shell 3.44 CMD...   any command inside, with the same mounts (qgis_process, screenshots)
# Versions: 3.40 = Debian trixie (Python 3.13), 3.44 = Debian sid (Python 3.14).
# Where: $THINK2SEG_CHROOT_DIR (default /var/cache/think2seg)/qgis-<version>, outside the clone.
# The mirror is the one the host's apt uses (its sources), else debootstrap's default.
# The backend runs from the host's .venv: its interpreter's install (pyenv or /usr) is bind-mounted read-only at the
# same path inside, so THINK2SEG_BACKEND_PYTHON works unchanged, and the service listens on 127.0.0.1.
set -euo pipefail

action=${1:?usage: qgis_chroot.sh build|prefetch|test|shell VERSION [ARGS]}
version=${2:?usage: qgis_chroot.sh build|prefetch|test|shell VERSION [ARGS]}
shift 2

case "$version" in
  3.40) suite=trixie ;;
  3.44) suite=sid ;;
  *) echo "QGIS $version is not one this script builds: choose 3.40 (Debian trixie) or 3.44 (Debian sid)." >&2; exit 2 ;;
esac

base=${THINK2SEG_CHROOT_DIR:-/var/cache/think2seg}
root=$base/qgis-$version
# python3-venv: "Set up backend" makes its venv with QGIS's Python, as a Debian user's would need too.
packages="python3-qgis qgis-providers qgis python3-pytest xvfb xauth python3-venv"
apt_opts=(-o Acquire::Check-Valid-Until=false -o APT::Install-Recommends=false -o Dpkg::Use-Pty=0)
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo

host_mirror() {
  # First Debian main archive URI in the host's apt sources (deb822 or one-line), else empty.
  local uri=""
  if compgen -G "/etc/apt/sources.list.d/*.sources" >/dev/null; then
    uri=$(awk '/^URIs:/ {for (i = 2; i <= NF; i++) if ($i !~ /security/) {print $i; exit}}' \
      /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)
  fi
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' \
      /etc/apt/sources.list | head -n1)
  fi
  case "$uri" in */debian|*/debian/) echo "$uri" ;; *) echo "" ;; esac
}

build() {
  $SUDO mkdir -p "$base"
  exec 8>"$root.build.lock"
  flock 8  # one build at a time (a `prefetch` in the background, then the run that needs it, waits here)
  if [ -f "$root/.built" ]; then
    if [ "$(cat "$root/.packages" 2>/dev/null)" != "$packages" ]; then  # the list grew since it was built
      $SUDO mount -t proc proc "$root/proc"
      $SUDO chroot "$root" apt-get "${apt_opts[@]}" update -q \
        && $SUDO chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y -q $packages \
        && $SUDO chroot "$root" apt-get clean; local rc=$?
      $SUDO umount "$root/proc"
      [ $rc = 0 ] || exit $rc
      echo "$packages" | $SUDO tee "$root/.packages" >/dev/null
    fi
    echo "QGIS $version chroot at $root is built ($(cat "$root/.built"))."
    flock -u 8
    return
  fi
  command -v debootstrap >/dev/null || { $SUDO apt-get update -q && $SUDO apt-get install -y -q debootstrap; }
  local mirror; mirror=$(host_mirror)
  local t0=$SECONDS tmp=$root.partial
  if findmnt -rn -o TARGET | grep -q "^$tmp/"; then  # never delete through a mount left by a killed build
    echo "Something is still mounted under $tmp: unmount it (umount -R) first." >&2; exit 1
  fi
  $SUDO rm -rf "$tmp"; $SUDO mkdir -p "$base"
  echo "Building the QGIS $version chroot (Debian $suite) at $root; this downloads about 1 GB once."
  # shellcheck disable=SC2086
  $SUDO debootstrap --variant=minbase "$suite" "$tmp" $mirror
  $SUDO mount -t proc proc "$tmp/proc"
  trap '$SUDO umount "$tmp/proc" 2>/dev/null || true' EXIT
  $SUDO chroot "$tmp" apt-get "${apt_opts[@]}" update -q
  $SUDO chroot "$tmp" env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y -q $packages
  $SUDO chroot "$tmp" apt-get clean
  $SUDO umount "$tmp/proc"; trap - EXIT
  local qv; qv=$($SUDO chroot "$tmp" dpkg-query -W -f='${Version}' python3-qgis)
  echo "python3-qgis $qv, $($SUDO chroot "$tmp" python3 --version), built in $((SECONDS - t0)) s" \
    | $SUDO tee "$tmp/.built" >/dev/null
  echo "$packages" | $SUDO tee "$tmp/.packages" >/dev/null
  $SUDO mv "$tmp" "$root"
  echo "QGIS $version chroot ready: $(cat "$root/.built")."
  flock -u 8
}

prefetch() {  # the build in the background (make test starts it before the backend suite); its log in $base
  $SUDO mkdir -p "$base"
  if [ -f "$root/.built" ] && [ "$(cat "$root/.packages" 2>/dev/null)" = "$packages" ]; then return; fi
  nohup bash "$0" build "$version" >"$base/build-$version.log" 2>&1 </dev/null &
  echo "Building the QGIS $version chroot in the background (pid $!, log $base/build-$version.log)."
}

# -- mounts ---------------------------------------------------------------------------------------------------
mounted=()   # mount points, in the order mounted; unmounted in reverse by cleanup (also on failure or Ctrl-C)
scratch=""

bind() {  # bind SRC at the same path inside (or at DST), read-only when $3 = ro
  local src=$1 dst=$root${2:-$1} mode=${3:-rw}
  [ -d "$src" ] && $SUDO mkdir -p "$dst" || { $SUDO mkdir -p "$(dirname "$dst")"; $SUDO touch "$dst"; }
  $SUDO mount --bind "$src" "$dst"
  mounted+=("$dst")
  if [ "$mode" = ro ]; then $SUDO mount -o remount,bind,ro "$dst"; fi
}

cleanup() {
  local rc=$? i
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
    $SUDO umount -R "${mounted[i]}" 2>/dev/null || $SUDO umount -R -l "${mounted[i]}" 2>/dev/null || true
  done
  mounted=()
  if findmnt -rn -o TARGET | grep -q "^$root/"; then
    echo "WARNING: still mounted under $root (unmount by hand before deleting it):" >&2
    findmnt -rn -o TARGET | grep "^$root/" >&2
  fi
  if [ -n "$scratch" ]; then rm -rf "$scratch"; fi
  exec 9>&- 2>/dev/null || true
  return $rc
}

enter() {
  build
  exec 9>"$root.lock"
  flock 9  # one run per chroot at a time: they share its mount points
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  local checkout venv_python prefix target
  checkout=$(cd "$(dirname "$0")/.." && pwd -P)
  venv_python=$checkout/.venv/bin/python
  [ -x "$venv_python" ] || { echo "No backend venv at $checkout/.venv: run \`make backend\` first." >&2; exit 2; }
  $SUDO mount -t proc proc "$root/proc"; mounted+=("$root/proc")
  $SUDO mount --rbind /dev "$root/dev"; $SUDO mount --make-rslave "$root/dev"; mounted+=("$root/dev")
  $SUDO mount --rbind /sys "$root/sys"; $SUDO mount --make-rslave "$root/sys"; mounted+=("$root/sys")
  scratch=$(mktemp -d /tmp/think2seg-qgis-"$version".XXXXXX)
  chmod 1777 "$scratch"
  bind "$scratch" /tmp
  bind "$checkout"
  # .venv, .venv-qgis, .cache may be links to folders outside the checkout: those folders, at their own paths.
  for link in .venv .cache; do
    target=$(readlink -f "$checkout/$link" || true)
    [ -d "$target" ] || continue
    case "$target" in "$checkout"/*) ;; *) if [ "$link" = .venv ]; then bind "$target" "" ro; else bind "$target"; fi ;; esac
  done
  # The backend venv's interpreter: its installation (pyenv's or /usr/local's), read-only, at the same path.
  prefix=$(dirname "$(dirname "$(readlink -f "$venv_python")")")
  case "$prefix" in /usr) ;; *) bind "$prefix" "" ro ;; esac
  $SUDO cp /etc/hosts "$root/etc/hosts"
}

inside() {  # a clean environment inside the chroot, in the checkout
  local checkout; checkout=$(cd "$(dirname "$0")/.." && pwd -P)
  $SUDO chroot "$root" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root LANG=C.UTF-8 TMPDIR=/tmp \
    QT_QPA_PLATFORM=offscreen OMP_WAIT_POLICY=PASSIVE THINK2SEG_BACKEND_PYTHON="$checkout/.venv/bin/python" \
    PYTHONPATH="$checkout/backend" PYTHONDONTWRITEBYTECODE=1 ${THINK2SEG_QGIS_ENV:-} \
    /bin/sh -c 'cd "$0" && exec "$@"' "$checkout" "$@"
}

case "$action" in
  build) build ;;
  prefetch) prefetch ;;
  test)
    enter
    echo "tests/plugin on $(cat "$root/.built")"
    inside python3 -m pytest tests/plugin -q -p no:cacheprovider "$@"
    ;;
  shell) enter; inside "$@" ;;
  *) echo "unknown action $action (build|prefetch|test|shell)" >&2; exit 2 ;;
esac
