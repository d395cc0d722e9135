#!/usr/bin/env bash
# The layer rule of docs/DESIGN.md §3, checked on every #include under src/:
#   common → cache → jit → ops/<op> → api     (a file includes only its own layer or lower ones)
#   ops/<a> includes no ops/<b>, except route_align, which is built from route and align, and
#   route_backward and route_losses, which are built on route;
#   the references (ops/*/reference.c) and op headers (ops/<op>/<op>.h) reach no CUDA header and no
#   jit/ header, even through other headers (they are plain C).
# Usage: tests/check_layers.sh SRC_DIR      (exit 1 listing every violation)
#        tests/check_layers.sh --self-test  (plants violations in a scratch tree; they must be found)
set -u

rank() { # layer of a path relative to src/: common 0, cache 1, jit 2, ops 3, api 4
  case $1 in common/*) echo 0 ;; cache/*) echo 1 ;; jit/*) echo 2 ;; ops/*) echo 3 ;; api/*) echo 4 ;; *) echo -1 ;; esac
}

quoted_includes() { sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$1"; }

# Every header a file reaches through quoted includes resolved under src/ (moejit*.h is the public API).
reach() {
  local src=$1 file=$2 seen=" " queue=("$2") f inc
  while [ ${#queue[@]} -gt 0 ]; do
    f=${queue[0]}; queue=("${queue[@]:1}")
    for inc in $(quoted_includes "$src/$f"); do
      [ -f "$src/$inc" ] || continue
      case $seen in *" $inc "*) continue ;; esac
      seen="$seen$inc "
      queue+=("$inc")
      echo "$inc"
    done
  done
}

check() {
  local src=$1 bad=0 file inc r ri a b
  while IFS= read -r file; do
    file=${file#"$src"/}
    r=$(rank "$file")
    for inc in $(quoted_includes "$src/$file"); do
      ri=$(rank "$inc")
      [ "$ri" -lt 0 ] && continue # the public headers, a file beside a test…
      if [ "$ri" -gt "$r" ]; then echo "$file includes $inc: a higher layer"; bad=1; fi
      case $file/$inc in
        ops/*/ops/*)
          a=${file#ops/}; a=${a%%/*}; b=${inc#ops/}; b=${b%%/*}
          if [ "$a" != "$b" ] && ! { [ "$a" = route_align ] && { [ "$b" = route ] || [ "$b" = align ]; }; } &&
             ! { { [ "$a" = route_backward ] || [ "$a" = route_losses ]; } && [ "$b" = route ]; }; then
            echo "$file includes $inc: ops/$a may not use ops/$b"; bad=1
          fi ;;
      esac
    done
    case $file in
      ops/*/reference.c | ops/*/*.h)
        for inc in $file $(reach "$src" "$file"); do
          if grep -qE '^[[:space:]]*#[[:space:]]*include[[:space:]]*<(cuda|nvrtc)\.h>' "$src/$inc"; then
            echo "$file reaches a CUDA header (through $inc): references and op headers are plain C"; bad=1
          fi
          case $inc in jit/*) echo "$file reaches $inc: references and op headers stay below the JIT"; bad=1 ;; esac
        done ;;
    esac
  done < <(find "$src" -name '*.[ch]' | sort)
  return $bad
}

if [ "${1:-}" = --self-test ]; then
  t=$(mktemp -d)
  trap 'rm -rf "$t"' EXIT
  mkdir -p "$t/common" "$t/jit" "$t/ops/route" "$t/ops/align" "$t/ops/route_backward" "$t/api"
  printf '#include "common/a.h"\n' > "$t/jit/ok.c"
  printf '#include "ops/route/route.h"\n' > "$t/ops/route_backward/spec.c"      # allowed: built on route
  printf '/* empty */\n' > "$t/ops/route/route.h"
  printf '#include <cuda.h>\n' > "$t/jit/driver.h"
  printf '/* empty */\n' > "$t/common/a.h"
  check "$t" > /dev/null || { echo "self-test: a clean tree was reported"; exit 1; }
  printf '#include "jit/ok.h"\n' > "$t/common/up.c"                            # a lower layer includes a higher
  printf '#include "ops/align/align.h"\n' > "$t/ops/route/launch.c"            # one op uses another
  printf '#include "common/b.h"\n' > "$t/ops/route/reference.c"                 # …reaches CUDA through b.h
  printf '#include "jit/driver.h"\n' > "$t/common/b.h"
  printf '/* empty */\n' > "$t/ops/align/align.h"
  printf '#include "ops/align/align.h"\n' > "$t/ops/route_backward/launch.c"   # …but not on align
  out=$(check "$t")
  case $out in *"ops/route_backward/spec.c"*) echo "self-test: route_backward's use of route was reported"; echo "$out"; exit 1 ;; esac
  for want in "common/up.c includes jit/ok.h" "ops/route may not use ops/align" "ops/route_backward may not use ops/align" \
              "ops/route/reference.c reaches a CUDA header" "ops/route/reference.c reaches jit/driver.h"; do
    case $out in *"$want"*) ;; *) echo "self-test: not found: $want"; echo "$out"; exit 1 ;; esac
  done
  echo "check_layers self-test: every planted violation found"
  exit 0
fi

src=${1:?usage: check_layers.sh SRC_DIR | --self-test}
if check "$src"; then
  echo "layers: $(find "$src" -name '*.[ch]' | wc -l) files under src/, every include points to its own layer or lower"
else
  exit 1
fi
