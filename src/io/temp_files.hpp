// Leftovers of atomic writes (library-internal; the command uses it for its own outputs).
#pragma once

#include <string>

namespace bptt {

// Removes the "<path>.tmp-<pid>" files that writers of `path` killed mid-write left behind (a
// SIGKILL or a power cut gives them no chance to clean up): only those whose process no longer
// runs, since a live one may still be writing. Best effort: errors are ignored. Every atomic
// writer (safetensors files, plot's and diagnose's outputs) calls it after its own rename.
void remove_stale_temporaries(const std::string& path);

}  // namespace bptt
