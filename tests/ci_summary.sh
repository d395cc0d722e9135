#!/usr/bin/env bash
# What a `ctest -V` log says ran, in one phrase: the ctest suites passed, skipped (a GPU suite
# without a device) and failed, then the test cases inside them (cmocka's and pytest's counts).
#   tests/ci_summary.sh LOG    →  "26 suites: 19 passed, 7 skipped, 0 failed; 212 cases: 190 passed, 22 skipped, 0 failed"
set -u
log=$1
count() { grep -cE "$1" "$log" || true; }
# cmocka ends a suite with "[  PASSED  ] N test(s)." and "[  SKIPPED ] N test(s), …" lines;
# pytest with "N passed, M skipped in 1.2s" (ctest -V prefixes lines with "NN: ")
cases() {
  { grep -oE "\[  $1 *\] [0-9]+ test\(s\)" "$log" | grep -oE '[0-9]+ test' | grep -oE '[0-9]+'
    grep -E '(^|: |=+ )[0-9]+ (passed|skipped|failed)(, [0-9]+ [a-z]+)* in [0-9.]+s' "$log" | grep -oE "[0-9]+ $2" |
      grep -oE '^[0-9]+'
  } | awk '{ s += $1 } END { print s + 0 }'
}
passed=$(count 'Test +#[0-9]+: .* Passed')
skipped=$(count 'Test +#[0-9]+: .*\*\*\*Skipped')
failed=$(count 'Test +#[0-9]+: .*(\*\*\*Failed|\*\*\*Timeout|\*\*\*Exception|Not Run)')
cp=$(cases PASSED passed) cs=$(cases SKIPPED skipped) cf=$(cases FAILED failed)
echo "$((passed + skipped + failed)) suites: $passed passed, $skipped skipped, $failed failed;" \
     "$((cp + cs + cf)) cases: $cp passed, $cs skipped, $cf failed"
