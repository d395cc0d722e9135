# Turn kernel templates into C arrays: cmake -DOUT=file.c -DINPUTS="a.cuh;b.cuh" -P embed_templates.cmake
# Each file foo.cuh becomes `const char mj_template_foo_cuh[]`, NUL-terminated.
set(body "/* Generated from kernel_templates/ by cmake/embed_templates.cmake — do not edit. */\n")
foreach(input IN LISTS INPUTS)
  get_filename_component(name "${input}" NAME)
  string(MAKE_C_IDENTIFIER "mj_template_${name}" symbol)
  file(READ "${input}" hex HEX)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  string(APPEND body "const char ${symbol}[] = {${bytes}0x00};\n")
endforeach()
file(WRITE "${OUT}.tmp" "${body}")
file(RENAME "${OUT}.tmp" "${OUT}")
