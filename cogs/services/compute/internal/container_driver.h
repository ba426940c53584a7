// The compute driver "container" (MakeComputeDriver): each instance an OCI container under runc
// (cogs/oci), in a network namespace of its own (cogs/linuxnet). README.md, "The container driver",
// has the model; compute.h the contract of a driver that reports (DriverEvents).
#pragma once

#include <memory>

#include "cogs/base/result.h"
#include "cogs/services/compute/compute.h"

namespace cogs::services::compute::internal {

// The built-in image, made from options.busybox on the host itself (no download); every other
// image comes from cogsd (internal/image_cache.h).
inline constexpr std::string_view kBusyboxImage = "busybox";

Result<std::unique_ptr<ComputeDriver>> MakeContainerDriver(ComputeDriverOptions options);

}  // namespace cogs::services::compute::internal
