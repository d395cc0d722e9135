/* xxHash, inlined (XXH_INLINE_ALL): the headers come from libxxhash-dev through pkg-config, and
 * the library gains no runtime dependency on libxxhash.so. */
#ifndef MOEJIT_HASH_H
#define MOEJIT_HASH_H

#define XXH_INLINE_ALL
#include <xxhash.h>

#endif
