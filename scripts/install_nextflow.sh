#!/usr/bin/env bash
# Install a pinned Nextflow release from Maven Central plus an offline wrapper.
#
# Usage: scripts/install_nextflow.sh [PREFIX]
#   PREFIX   install dir, relative to the repo root (default: .nextflow-dist)
#
# Result:
#   $PREFIX/bin/nextflow   wrapper: java <flags> -cp "$PREFIX/lib/*" nextflow.cli.Launcher "$@"
#   $PREFIX/lib/           nextflow jar + all runtime dependencies
#   $PREFIX/m2/            private Maven cache (lets a re-install work offline)
#   $PREFIX/home/          default NXF_HOME
#   $PREFIX/VERSION        the installed Nextflow version
#
# Environment:
#   PERTPROBE_NXF_OFFICIAL=1     use the official installer (get.nextflow.io) if reachable
#   PERTPROBE_NXF_FORCE_LOCAL=1  install into PREFIX even if a recent nextflow is on PATH
#   PERTPROBE_NXF_REINSTALL=1    reinstall even if PREFIX already holds a working install
#   PERTPROBE_NXF_SKIP_SELFTEST=1  skip running a tiny pipeline after installing
#
# Why Maven Central: get.nextflow.io / GitHub releases may be unreachable, but
# Nextflow publishes io.nextflow:nextflow (and its modules) to Central. Central
# is incomplete, though (checked 2025-11 against repo1.maven.org):
#   * 25.04.1-25.04.3: nextflow jar present, nf-commons/nf-httpfs missing -> unusable
#   * 25.04.4: nextflow, nf-commons, nf-httpfs present, but
#       - io.nextflow:nf-lang:25.04.4 is missing: only nf-lang 25.04.0 exists.
#         Workaround: exclude it and use nf-lang 25.04.0 (the 25.04.0..25.04.4
#         diff of nf-lang is three small internal fixes, used by the v2 syntax
#         parser / `nextflow lint`; the default v1 parser is not affected).
#       - io.seqera:lib-trace:0.1.0 is not on Central at all (Seqera's own repo).
#         Workaround: exclude it. It is only referenced by
#         nextflow.util.SimpleHttpClient, which only the nf-tower/nf-wave/
#         nf-console plugins use; we run without plugins.
#       - io.nextflow:nf-lineage is not published either (it is only bundled in
#         the official fat jar), so `nextflow lineage` / `lineage.enabled` are
#         unavailable in this build.
#   * 24.10.8 (and 24.10.0): resolves cleanly from Central, no workaround needed.
#   The POM also lists test-fixture deps (spock, groovy-test, jimfs, byte-buddy)
#   as compile+optional; optional deps are not pulled transitively, as wanted.
set -euo pipefail

# ---- pinned versions --------------------------------------------------------
# Tried in order; the first that resolves AND passes the smoke test wins.
NXF_VERSIONS=(25.04.4 24.10.8 24.10.0)
# Per-version replacement for a missing io.nextflow:nf-lang artifact.
# (a function, not an associative array: macOS still ships bash 3.2)
nf_lang_override() {
    case $1 in
        25.04.4) echo 25.04.0 ;;
        *) ;;
    esac
}
# Artifacts excluded for every version (not on Central, not needed offline).
EXCLUDES=(io.seqera:lib-trace)
# Pinned maven-dependency-plugin (Maven 3.8's default 2.8 also works).
MVN_DEP_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.8.1
# A nextflow already on PATH is accepted if it is at least this version.
MIN_PATH_VERSION=24.10

# ---- setup -----------------------------------------------------------------
script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)
cd "$repo_root"

PREFIX=${1:-.nextflow-dist}
[[ "$PREFIX" == /* ]] || PREFIX=$repo_root/$PREFIX
PREFIX=${PREFIX%/}

log() { printf '[install_nextflow] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# version_ge A B : true if A >= B (dotted numeric compare, ignores -edge etc.)
version_ge() {
    [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" == "$2" ]]
}

tmp_dir=$(mktemp -d "${TMPDIR:-/tmp}/install_nextflow.XXXXXX")
trap 'rm -rf "$tmp_dir"' EXIT

# ---- 0. already installed in PREFIX? ----------------------------------------
installed_ok() {
    [[ -x "$PREFIX/bin/nextflow" && -s "$PREFIX/VERSION" ]] || return 1
    local v; v=$(<"$PREFIX/VERSION")
    # a re-pinned version list forces a re-install
    [[ " ${NXF_VERSIONS[*]} " == *" $v "* ]] || return 1
    "$PREFIX/bin/nextflow" -version >/dev/null 2>&1
}
if [[ "${PERTPROBE_NXF_REINSTALL:-0}" != 1 ]] && installed_ok; then
    log "Nextflow $(<"$PREFIX/VERSION") already installed in $PREFIX"
    exit 0
fi

# ---- 1. a recent nextflow on PATH is good enough ----------------------------
if [[ "${PERTPROBE_NXF_FORCE_LOCAL:-0}" != 1 ]] && command -v nextflow >/dev/null 2>&1; then
    path_nf=$(command -v nextflow)
    # `nextflow -v` prints e.g. "nextflow version 24.10.0.5928"
    path_ver=$(NXF_OFFLINE=true timeout 120 nextflow -v 2>/dev/null \
               | sed -n 's/.*version \([0-9][0-9]*\.[0-9][0-9]*\.[0-9][0-9]*\).*/\1/p' | head -n1 || true)
    if [[ -n "$path_ver" ]] && version_ge "$path_ver" "$MIN_PATH_VERSION"; then
        log "Using nextflow $path_ver already on PATH ($path_nf); linking it as $PREFIX/bin/nextflow"
        mkdir -p "$PREFIX/bin"
        printf '#!/usr/bin/env bash\n# Generated by scripts/install_nextflow.sh: the nextflow found on PATH.\nexec %q "$@"\n' \
            "$path_nf" > "$PREFIX/bin/nextflow"
        chmod +x "$PREFIX/bin/nextflow"
        exit 0
    fi
    log "nextflow on PATH (${path_ver:-unknown version}) is older than $MIN_PATH_VERSION; installing into $PREFIX"
fi

command -v java >/dev/null 2>&1 || [[ -n "${JAVA_HOME:-}" ]] || die "java not found (Java 17+ required)"
mkdir -p "$PREFIX"

# ---- wrapper ----------------------------------------------------------------
# $1 = mode (maven|official). The wrapper locates its install dir at run time
# (following symlinks), so PREFIX can be moved and the wrapper symlinked.
write_wrapper() {
    local mode=$1
    mkdir -p "$PREFIX/bin"
    {
        printf '#!/usr/bin/env bash\n'
        printf '# Generated by scripts/install_nextflow.sh -- do not edit.\n'
        printf 'NXF_WRAPPER_MODE=%q\n' "$mode"
        cat <<'WRAPPER'
# Resolve the real location of this script (it may be called via a symlink).
src=${BASH_SOURCE[0]}
while [[ -L "$src" ]]; do
    dir=$(cd -P "$(dirname "$src")" && pwd)
    src=$(readlink "$src")
    [[ "$src" == /* ]] || src="$dir/$src"
done
bin_dir=$(cd -P "$(dirname "$src")" && pwd)
prefix=$(dirname "$bin_dir")

# Offline, plugin-free defaults; anything already set in the env wins.
export NXF_HOME=${NXF_HOME:-$prefix/home}
export NXF_OFFLINE=${NXF_OFFLINE:-true}
export NXF_PLUGINS_DEFAULT=${NXF_PLUGINS_DEFAULT:-false}   # never auto-add nf-amazon & co
export NXF_DISABLE_CHECK_LATEST=${NXF_DISABLE_CHECK_LATEST:-true}
export NXF_CLI="$0 $*"
[[ -n "${COLUMNS:-}" ]] && export COLUMNS

if [[ "$NXF_WRAPPER_MODE" == official ]]; then
    export NXF_VER=${NXF_VER:-$(<"$prefix/VERSION")}
    exec "$prefix/official/nextflow" "$@"
fi

# --- java
if [[ -n "${NXF_JAVA_HOME:-}" ]]; then JAVA_HOME=$NXF_JAVA_HOME; fi
if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then java_cmd=$JAVA_HOME/bin/java
else java_cmd=$(command -v java) || { echo "nextflow: java not found (Java 17+ required)" >&2; exit 1; }
fi
# Major Java version: read the JDK's 'release' file (cheap), else ask java.
java_major=''
java_real=$(readlink -f "$java_cmd" 2>/dev/null || echo "$java_cmd")
for rel in "$(dirname "$java_real")/../release" "$(dirname "$java_real")/../../release"; do
    if [[ -f "$rel" ]]; then
        java_major=$(sed -n 's/^JAVA_VERSION="\([0-9]*\).*/\1/p' "$rel"); break
    fi
done
if [[ -z "$java_major" ]]; then
    java_major=$("$java_cmd" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)
fi
java_major=${java_major:-17}

# see https://github.com/nextflow-io/nextflow/issues/1716
unset JAVA_TOOL_OPTIONS

# --- command line: leading -Dxxx go to the JVM as well (as the official launcher does)
# (-D and -bg are also understood by nextflow.cli.Launcher, so they stay in args)
cmd='' bg=''
declare -a jvm_opts=() args=("$@")
for a in "$@"; do
    case $a in
        -D*) [[ -z "$cmd" ]] && jvm_opts+=("$a") ;;
        -bg) bg=1 ;;
        clone|config|console|drop|help|history|info|inspect|kuberun|lint|list|log|ls|node|plugin|pull|run|secrets|self-update|view)
             [[ -z "$cmd" ]] && cmd=$a ;;
    esac
done

# --- JVM flags (same as nextflow's own launcher on Java 17+)
declare -a opts=(
    -Dfile.encoding=UTF-8
    -Djava.awt.headless=true
    -Dcom.sun.security.enableAIAcaIssuers=true
    --add-opens=java.base/java.lang=ALL-UNNAMED
    --add-opens=java.base/java.io=ALL-UNNAMED
    --add-opens=java.base/java.nio=ALL-UNNAMED
    --add-opens=java.base/java.net=ALL-UNNAMED
    --add-opens=java.base/java.util=ALL-UNNAMED
    --add-opens=java.base/java.util.concurrent.locks=ALL-UNNAMED
    --add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED
    --add-opens=java.base/java.nio.file.spi=ALL-UNNAMED
    --add-opens=java.base/sun.nio.ch=ALL-UNNAMED
    --add-opens=java.base/sun.nio.fs=ALL-UNNAMED
    --add-opens=java.base/sun.net.www.protocol.http=ALL-UNNAMED
    --add-opens=java.base/sun.net.www.protocol.https=ALL-UNNAMED
    --add-opens=java.base/sun.net.www.protocol.ftp=ALL-UNNAMED
    --add-opens=java.base/sun.net.www.protocol.file=ALL-UNNAMED
    --add-opens=java.base/jdk.internal.misc=ALL-UNNAMED
    --add-opens=java.base/jdk.internal.vm=ALL-UNNAMED
    --add-opens=java.base/java.util.regex=ALL-UNNAMED
)
# quick C1-only JIT for short-lived commands (not for run/node), as upstream does
[[ "$cmd" != run && "$cmd" != node ]] && opts+=(-XX:+TieredCompilation -XX:TieredStopAtLevel=1)
(( java_major >= 24 )) && opts+=(--enable-native-access=ALL-UNNAMED --sun-misc-unsafe-memory-access=allow)
if (( java_major >= 21 )) && [[ -z "${NXF_ENABLE_VIRTUAL_THREADS:-}" ]]; then
    export NXF_ENABLE_VIRTUAL_THREADS=true
fi
[[ -n "${NXF_TEMP:-}" ]] && opts+=(-Djava.io.tmpdir="$NXF_TEMP")
# NXF_OPTS / NXF_JVM_ARGS: extra JVM options (word-split on purpose, like upstream)
# shellcheck disable=SC2206
[[ -n "${NXF_OPTS:-}" ]] && opts+=($NXF_OPTS)
# shellcheck disable=SC2206
[[ -n "${NXF_JVM_ARGS:-}" ]] && opts+=($NXF_JVM_ARGS)
(( ${#jvm_opts[@]} )) && opts+=("${jvm_opts[@]}")
# shellcheck disable=SC2206
[[ -n "${NXF_CLI_OPTS:-}" ]] && args+=($NXF_CLI_OPTS)

launch=("$java_cmd" "${opts[@]}" -cp "$prefix/lib/*" nextflow.cli.Launcher "${args[@]}")
if [[ -n "$bg" ]]; then
    "${launch[@]}" &
    echo $! > "${NXF_PID_FILE:-.nextflow.pid}"
    disown
    exit 0
fi
exec "${launch[@]}"
WRAPPER
    } > "$PREFIX/bin/nextflow.tmp"
    chmod +x "$PREFIX/bin/nextflow.tmp"
    mv -f "$PREFIX/bin/nextflow.tmp" "$PREFIX/bin/nextflow"
}

# ---- smoke test: -version plus a tiny local pipeline --------------------------
smoke_test() {
    local want=$1 out
    out=$("$PREFIX/bin/nextflow" -version 2>&1) || { log "$out"; return 1; }
    grep -q "version $want" <<<"$out" || { log "unexpected -version output: $out"; return 1; }
    [[ "${PERTPROBE_NXF_SKIP_SELFTEST:-0}" == 1 ]] && return 0
    local t="$tmp_dir/selftest"
    rm -rf "$t"; mkdir -p "$t"
    cat > "$t/main.nf" <<'NF'
process HELLO {
    input: val x
    output: path 'out.txt'
    script: "echo hello ${x} > out.txt"
}
workflow { HELLO(Channel.of('nf')) | view { it.text.trim() } }
NF
    out=$(cd "$t" && "$PREFIX/bin/nextflow" -q run main.nf -ansi-log false 2>&1) \
        || { log "self-test pipeline failed:"; log "$out"; return 1; }
    grep -q 'hello nf' <<<"$out" || { log "self-test output unexpected: $out"; return 1; }
}

# ---- 2. official installer (opt-in) -----------------------------------------
if [[ "${PERTPROBE_NXF_OFFICIAL:-0}" == 1 ]] && ! { command -v curl >/dev/null 2>&1 \
        && curl -fsSL --max-time 30 https://get.nextflow.io -o "$tmp_dir/get-nextflow.sh"; }; then
    log "official installer (get.nextflow.io) unreachable; using Maven Central"
elif [[ "${PERTPROBE_NXF_OFFICIAL:-0}" == 1 ]]; then
    ver=${NXF_VERSIONS[0]}
    log "Installing Nextflow $ver with the official installer"
    mkdir -p "$PREFIX/official"
    # the installer must be fed on stdin (it checks $0 == bash); it writes
    # ./nextflow and downloads the framework jar into $NXF_HOME
    if (cd "$PREFIX/official" && NXF_VER=$ver NXF_HOME="$PREFIX/home" bash < "$tmp_dir/get-nextflow.sh" >&2); then
        echo "$ver" > "$PREFIX/VERSION"
        write_wrapper official
        if smoke_test "$ver"; then
            log "Installed Nextflow $ver (official) -> $PREFIX/bin/nextflow"
            exit 0
        fi
    fi
    log "official installer failed; falling back to Maven Central"
fi

# ---- 3. Maven Central --------------------------------------------------------
command -v mvn >/dev/null 2>&1 || die "mvn not found (needed to fetch Nextflow from Maven Central)"

write_pom() {
    local ver=$1 pom=$2 ex lang
    lang=$(nf_lang_override "$1")
    {
        cat <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.install</groupId>
  <artifactId>nextflow-dist</artifactId>
  <version>$ver</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>io.nextflow</groupId>
      <artifactId>nextflow</artifactId>
      <version>$ver</version>
      <exclusions>
EOF
        for ex in "${EXCLUDES[@]}"; do
            printf '        <exclusion><groupId>%s</groupId><artifactId>%s</artifactId></exclusion>\n' "${ex%%:*}" "${ex#*:}"
        done
        [[ -n "$lang" ]] && printf '        <exclusion><groupId>io.nextflow</groupId><artifactId>nf-lang</artifactId></exclusion>\n'
        printf '      </exclusions>\n    </dependency>\n'
        [[ -n "$lang" ]] && printf '    <dependency><groupId>io.nextflow</groupId><artifactId>nf-lang</artifactId><version>%s</version></dependency>\n' "$lang"
        printf '  </dependencies>\n</project>\n'
    } > "$pom"
}

failed=()
for ver in "${NXF_VERSIONS[@]}"; do
    log "Resolving io.nextflow:nextflow:$ver and runtime dependencies from Maven Central ..."
    pom="$tmp_dir/pom-$ver.xml"
    write_pom "$ver" "$pom"
    rm -rf "$PREFIX/lib.new"
    if ! mvn -q -B -f "$pom" -Dmaven.repo.local="$PREFIX/m2" \
            "$MVN_DEP_PLUGIN:copy-dependencies" \
            -DincludeScope=runtime -DoutputDirectory="$PREFIX/lib.new" >"$tmp_dir/mvn-$ver.log" 2>&1; then
        log "  $ver: resolution failed: $(grep -m1 -o 'Could not resolve dependencies.*' "$tmp_dir/mvn-$ver.log" || tail -n 3 "$tmp_dir/mvn-$ver.log")"
        failed+=("$ver")
        continue
    fi
    [[ -f "$PREFIX/lib.new/nextflow-$ver.jar" ]] || { log "  $ver: nextflow jar missing"; failed+=("$ver"); continue; }
    rm -rf "${PREFIX:?}/lib" "${PREFIX:?}/official"
    mv "$PREFIX/lib.new" "$PREFIX/lib"
    echo "$ver" > "$PREFIX/VERSION"
    write_wrapper maven
    if smoke_test "$ver"; then
        log "Installed Nextflow $ver ($(find "$PREFIX/lib" -name "*.jar" | wc -l) jars) -> $PREFIX/bin/nextflow"
        [[ ${#failed[@]} -gt 0 ]] && log "(versions that failed first: ${failed[*]})"
        exit 0
    fi
    log "  $ver: smoke test failed"
    failed+=("$ver")
    rm -f "$PREFIX/VERSION"
done
rm -rf "$PREFIX/lib.new"
die "could not install any of: ${NXF_VERSIONS[*]} (failed: ${failed[*]})"
