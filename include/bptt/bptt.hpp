// The bptt library in one include: everything docs/api.md lists as its supported API.
//
//   #include <bptt/bptt.hpp>       // CMake: find_package(bptt CONFIG) + bptt::bptt;
//                                  // pkg-config: pkg-config --cflags --libs bptt
//
// The headers it gathers can also be included one by one (each includes what it needs).
#pragma once

#include "bptt/version.hpp"

#include "bptt/error.hpp"
#include "bptt/types.hpp"
#include "bptt/cpu.hpp"
#include "bptt/limits.hpp"
#include "bptt/threads.hpp"

#include "bptt/model.hpp"
#include "bptt/batch.hpp"
#include "bptt/loss.hpp"
#include "bptt/unroll.hpp"
#include "bptt/infer.hpp"
#include "bptt/stream.hpp"
#include "bptt/methods.hpp"
#include "bptt/diagnose.hpp"
#include "bptt/optim.hpp"

#include "bptt/safetensors.hpp"
#include "bptt/io.hpp"
#include "bptt/import.hpp"

#include "bptt/data.hpp"
#include "bptt/tasks.hpp"
#include "bptt/train.hpp"
