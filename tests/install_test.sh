#!/bin/sh
# Install moejit into a temporary prefix and build examples out of tree against it, both ways:
# CMake (find_package(moejit) → moejit::moejit and moejit::moejit_static) and pkg-config (shared,
# and static with Libs.private). Every program built is run (the GPU parts skip without a device).
#   tests/install_test.sh SOURCE_DIR BUILD_DIR CMAKE CC CUDA_INCLUDE_DIR CUDA_LIBRARY_DIR [FLAGS]
# FLAGS (e.g. -fsanitize=address,undefined in a sanitizer build) go to every compile and link.
set -eu
src=$1 build=$2 cmake=$3 cc=$4 cuda_inc=$5 cuda_lib=$6 flags=${7:-}
work=$(mktemp -d "${TMPDIR:-/tmp}/moejit-install-XXXXXX")
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix
step() { printf '== %s\n' "$*"; }

step "cmake --install into $prefix"
"$cmake" --install "$build" --prefix "$prefix" >"$work/install.log"
for f in include/moejit.h bin/moejit; do test -e "$prefix/$f" || { echo "missing $f"; exit 1; }; done
pc=$(find "$prefix" -name moejit.pc)
libdir=$(dirname "$(dirname "$pc")")
for f in libmoejit.so libmoejit.a cmake/moejit/moejit-config.cmake cmake/moejit/moejit-config-version.cmake \
         cmake/moejit/moejitTargets.cmake; do
  test -e "$libdir/$f" || { echo "missing $libdir/$f"; exit 1; }
done
"$prefix/bin/moejit" --version

step "CMake: find_package(moejit) from an out-of-tree project"
"$cmake" -S "$src/examples/consumer" -B "$work/consumer" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc" \
  -DCMAKE_C_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="$flags" -DCMAKE_BUILD_TYPE=Release >"$work/configure.log" || { cat "$work/configure.log"; exit 1; }
"$cmake" --build "$work/consumer" >"$work/build.log" || { cat "$work/build.log"; exit 1; }
"$work/consumer/route_batch" --experts 64 --topk 4 --tokens 4
"$work/consumer/moe_layer" --model mixtral --tokens 16 --hidden 64
"$work/consumer/moe_layer_static" --model mixtral --tokens 16 --hidden 64
if readelf -d "$work/consumer/moe_layer_static" | grep -q 'libmoejit'; then
  echo "moe_layer_static depends on the shared libmoejit"; exit 1
fi
readelf -d "$work/consumer/moe_layer" | grep -q 'libmoejit.so.0' || { echo "moe_layer is not linked to libmoejit.so.0"; exit 1; }

step "pkg-config: $(PKG_CONFIG_PATH=$(dirname "$pc") pkg-config --modversion moejit)"
export PKG_CONFIG_PATH="$(dirname "$pc")"
cuda="-I$cuda_inc -L$cuda_lib -Wl,-rpath,$cuda_lib -lcudart"
# shared
# shellcheck disable=SC2046,SC2086
"$cc" $flags -std=c11 -o "$work/route_batch_pc" "$src/examples/route_batch.c" $(pkg-config --cflags --libs moejit) $cuda
LD_LIBRARY_PATH="$libdir" "$work/route_batch_pc" --experts 16 --topk 2 --tokens 2
# static: the archive, then exactly the private libraries the .pc declares
private=""
for flag in $(pkg-config --static --libs-only-l moejit); do
  [ "$flag" = "-lmoejit" ] || private="$private $flag"
done
echo "Libs.private:$private"
# shellcheck disable=SC2046,SC2086
"$cc" $flags -std=c11 -o "$work/moe_layer_pc_static" "$src/examples/moe_layer.c" $(pkg-config --cflags moejit) \
  "$libdir/libmoejit.a" $private $cuda -lm
if readelf -d "$work/moe_layer_pc_static" | grep -q 'libmoejit'; then
  echo "moe_layer_pc_static depends on the shared libmoejit"; exit 1
fi
"$work/moe_layer_pc_static" --model llama-4 --tokens 8 --hidden 32 --dtype f32
step "install test passed"
