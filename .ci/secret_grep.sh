#!/usr/bin/env bash
# Issue 6: no configured secret in any log line. Runs after `cargo test`, which leaves in the
# test log folder (tests/common/logs.rs) what every in-process server and every spawned
# binary logged, and a manifest of every secret the harness configured. Greps each log for
# each secret and for the forms a leak would take, and fails naming the file, the line and
# the secret's NAME (never the secret). Also fails when the check would prove nothing: too
# few logs or secrets, a log channel that stayed silent, or a detector that misses a
# planted leak.
#
# Usage: .ci/secret_grep.sh [FILE...]   FILEs are checked too (e.g. the output of `cargo test`)
# The folder must have been emptied before `cargo test` (.ci/run does), or stale logs count.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."

dir=${SCIM_RELAY_TEST_LOGS:-${CARGO_TARGET_DIR:-target}/test-logs}
# Floors at about half of what a full `cargo test` produced when they were set (87 non-empty
# log files, 5,879 lines, 86 secrets, 77 servers listening), so a run where logging silently
# broke, or only part of the suite ran, cannot pass.
min_files=${MIN_LOG_FILES:-40}
min_lines=${MIN_LOG_LINES:-2500}
min_secrets=${MIN_SECRETS:-40}
min_listening=${MIN_LISTENING:-35}
# Every kind of secret the harness records must be there, or that kind went unchecked.
required_names=(TOKEN ADMIN_TOKEN webhook-secret scim2-target-token cli-token-create)

fail() {
    printf 'secret grep: FAIL: %s\n' "$*" >&2
    exit 1
}

[ -d "$dir" ] || fail "no test log folder $dir (run cargo test first)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- The secrets -----------------------------------------------------------------------

shopt -s nullglob
manifests=("$dir"/secrets-*.txt)
[ ${#manifests[@]} -gt 0 ] || fail "no secrets manifest in $dir"

declare -A name_of   # secret -> NAME
while IFS=$'\t' read -r name secret; do
    [ -n "$secret" ] || continue
    name_of[$secret]=$name
done < <(cat "${manifests[@]}")
for required in "${required_names[@]}"; do
    found=0
    for name in "${name_of[@]}"; do
        [ "$name" = "$required" ] && found=1 && break
    done
    [ $found = 1 ] || fail "no secret named $required in the manifests"
done

# --- What a leak looks like --------------------------------------------------------------

# The base64 of the bytes in file `$1` as it appears inside any longer base64 text (a Basic
# header's `user:secret`, an encoded blob), whatever the length of what precedes them: for
# each of the three byte alignments, the characters that depend on these bytes alone.
# A file, not a string, because a decoded key may hold NUL and newline bytes.
b64_cores() {
    local n p enc start end
    n=$(wc -c <"$1")
    for p in 0 1 2; do
        enc=$( (head -c $p /dev/zero && cat "$1") | base64 -w0)
        start=$((p == 0 ? 0 : 4))
        end=$(((p + n) / 3 * 4))
        printf '%s\n' "${enc:start:end-start}"
    done
}

percent() {
    local s=$1 out='' c i
    for ((i = 0; i < ${#s}; i++)); do
        c=${s:i:1}
        case $c in
        [A-Za-z0-9._~-]) out+=$c ;;
        *) printf -v c '%%%02X' "'$c" && out+=$c ;;
        esac
    done
    printf '%s\n' "$out"
}

# Prints form `$1` of a string `$2` unless it is `$2` itself, so a hit is named by the form
# that really occurred.
also() {
    [ "$3" = "$2" ] || printf '%s\t%s\n' "$1" "$3"
}

# Prints `FORM<TAB>PATTERN` lines: every string whose presence in a log means `$1` leaked.
forms() {
    local s=$1 core key key_b64 bytes raw=$work/bytes
    if [[ $s == whsec_* ]]; then
        # The key is what signs; the `whsec_` prefix is only packaging.
        key_b64=${s#whsec_}
        key_b64=${key_b64%%=*}
        printf 'key-base64\t%s\n' "$key_b64"
        also key-base64url "$key_b64" "$(printf '%s' "$key_b64" | tr '+/' '-_')"
        also key-percent-encoded "$key_b64" "$(percent "$key_b64")"
        printf '%s' "${s#whsec_}" | base64 -d >"$raw"
        bytes=$(od -An -v -tu1 <"$raw" | tr -s ' \n' ' ')
        bytes=${bytes# }
        bytes=${bytes% }
        printf 'key-hex\t%s\n' "$(od -An -v -tx1 <"$raw" | tr -d ' \n')"
        printf 'key-bytes-debug\t[%s]\n' "${bytes// /, }"
        while read -r core; do printf 'key-in-base64\t%s\n' "$core"; done < <(b64_cores "$raw")
    else
        printf 'raw\t%s\n' "$s"
        also percent-encoded "$s" "$(percent "$s")"
    fi
    printf '%s' "$s" >"$raw"
    while read -r core; do printf 'in-base64\t%s\n' "$core"; done < <(b64_cores "$raw")
}

declare -A what_of   # pattern -> "NAME (form)"
patterns=$work/patterns
for secret in "${!name_of[@]}"; do
    while IFS=$'\t' read -r form pattern; do
        # Short patterns would match by chance; every harness secret is far longer.
        [ ${#pattern} -ge 16 ] || fail "a ${name_of[$secret]} secret's $form form is only ${#pattern} characters"
        what_of[$pattern]="${name_of[$secret]} ($form)"
    done < <(forms "$secret")
done
printf '%s\n' "${!what_of[@]}" >"$patterns"

# Prints `FILE:LINE: secret NAME (form)` per leak found in the given files; never the match.
scan() {
    local hit file rest line match
    grep -HnaoF -f "$patterns" -- "$@" | while IFS= read -r hit; do
        file=${hit%%:*}
        rest=${hit#*:}
        line=${rest%%:*}
        match=${rest#*:}
        printf '%s:%s: secret %s\n' "$file" "$line" "${what_of[$match]:-?}"
    done || true
}

# --- Positive control: the detector finds planted leaks ---------------------------------

# One secret of each kind, planted in every form a log line might carry it.
planted=$work/planted.log
expected=0
for required in TOKEN webhook-secret; do
    for secret in "${!name_of[@]}"; do
        [ "${name_of[$secret]}" = "$required" ] || continue
        for user in '' a ab svc; do
            printf 'DEBUG request authorization="Basic %s"\n' "$(printf '%s:%s' "$user" "$secret" | base64 -w0)" >>"$planted"
            expected=$((expected + 1))
        done
        while IFS=$'\t' read -r form pattern; do
            printf 'DEBUG x=1 leaked="%s" y=2\n' "$pattern" >>"$planted"
            expected=$((expected + 1))
        done < <(forms "$secret")
        if [[ $secret == whsec_* ]]; then
            # The key's bytes inside a longer base64 blob, at an offset.
            printf 'blob=%s\n' "$( (printf 'xy' && printf '%s' "${secret#whsec_}" | base64 -d && printf 'z') | base64 -w0)" >>"$planted"
            expected=$((expected + 1))
        fi
        break
    done
done
caught=$(scan "$planted" | cut -d: -f2 | sort -u | wc -l)
[ "$caught" -eq "$expected" ] ||
    fail "the detector caught $caught of $expected planted leaks"

# --- The logs ----------------------------------------------------------------------------

logs=()
for f in "$dir"/*; do
    [ -f "$f" ] || continue
    case ${f##*/} in secrets-*.txt) continue ;; esac
    logs+=("$f")
done
extra=()
for f in "$@"; do
    [ -f "$f" ] || fail "no such file: $f"
    extra+=("$f")
done

nonempty=0
for f in "${logs[@]}"; do [ -s "$f" ] && nonempty=$((nonempty + 1)); done
lines=0
[ ${#logs[@]} -gt 0 ] && lines=$(cat "${logs[@]}" | wc -l)
inproc=("$dir"/*[0-9].log)
spawned=("$dir"/*.bin-*.stderr.log)
# Lines matching `$1` in the files after it (0 for none).
count() {
    local pattern=$1
    shift
    [ $# -gt 0 ] || { echo 0 && return; }
    grep -hac -- "$pattern" "$@" | awk '{ n += $1 } END { print n + 0 }'
}
listening=$(count 'scim-relay listening' "${logs[@]}")
listening_inproc=$(count 'scim-relay listening' "${inproc[@]}")
listening_spawned=$(count 'scim-relay listening' "${spawned[@]}")
debug_inproc=$(count ' DEBUG .*scim_relay::' "${inproc[@]}")
debug_spawned=$(count ' DEBUG .*scim_relay::' "${spawned[@]}")

printf 'secret grep: %d secrets (%d patterns) from %d manifests; %d log files (%d non-empty, %d in-process, %d spawned binaries), %d lines; %d "scim-relay listening" (%d in-process, %d spawned); %d planted leaks caught\n' \
    ${#name_of[@]} ${#what_of[@]} ${#manifests[@]} ${#logs[@]} "$nonempty" ${#inproc[@]} ${#spawned[@]} "$lines" \
    "$listening" "$listening_inproc" "$listening_spawned" "$caught"

# Leaks first: a run too small to prove anything can still show one.
leaks=$(scan "${logs[@]}" "${extra[@]}")
if [ -n "$leaks" ]; then
    printf '%s\n' "$leaks" >&2
    fail "$(printf '%s\n' "$leaks" | wc -l) log lines carry a configured secret"
fi

[ ${#name_of[@]} -ge "$min_secrets" ] ||
    fail "only ${#name_of[@]} distinct secrets in the manifests (at least $min_secrets expected)"
[ "$nonempty" -ge "$min_files" ] || fail "only $nonempty non-empty log files (at least $min_files expected)"
[ "$lines" -ge "$min_lines" ] || fail "only $lines log lines (at least $min_lines expected)"
[ "$listening" -ge "$min_listening" ] ||
    fail "only $listening servers said \"scim-relay listening\" (at least $min_listening expected)"
[ "$listening_inproc" -gt 0 ] || fail "no in-process server logged that it listens"
[ "$listening_spawned" -gt 0 ] || fail "no spawned binary logged that it listens"
[ "$debug_inproc" -gt 0 ] || fail "no DEBUG line from scim_relay in the in-process logs"
[ "$debug_spawned" -gt 0 ] || fail "no DEBUG line from scim_relay in the spawned binaries' logs"
echo "secret grep: ok, no configured secret in any log"
