/* The library's version at run time (the header's macros give the version a program was built with). */
#include "moejit.h"

unsigned moejit_version_number(void) { return MOEJIT_VERSION_NUMBER; }

const char *moejit_version_string(void) { return MOEJIT_VERSION_STRING; }
