// Device discovery. Safe to call on machines without a GPU or driver: nothing here throws for that.
#pragma once
#include <string>

namespace pyrnn {
namespace cuda {

// Usable devices; 0 (never an exception) when there is no driver or device.
int device_count();
// Empty when device_count() > 0, else why not, e.g. "no CUDA driver found (cudaErrorInsufficientDriver: ...)".
std::string unavailable_reason();
// Throws pyrnn::Error for an invalid index.
std::string device_name(int device);
// Waits for all work on the current device (all streams). Takes the device's lock
// (Context::mutex()): not to be called while holding it.
void synchronize();
// Waits for all work on `device` (all streams); the caller's current device is restored.
// device < 0: the current device, as synchronize(). Takes that device's lock, as synchronize().
void synchronize_device(int device);
// Versions as 1000 * major + 10 * minor; driver_version() is 0 without a driver.
int runtime_version();
int driver_version();

}  // namespace cuda
}  // namespace pyrnn
