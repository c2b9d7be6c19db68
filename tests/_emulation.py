"""Whether pyrnn._cuda is the test build over the host emulation of CUDA
(PYRNN_CUDA_HOST_EMULATION=ON; `bash tests/reliability.sh cuda-emulation`): its one "device",
named "host emulation", runs the real Cython and orchestration code on the CPU, every GPU thread
as a host thread. The C++ library it installs is still the real CUDA one."""
import pyrnn
import pyrnn.cuda

EMULATED = pyrnn.cuda.is_available() and pyrnn.info()["cuda_devices"] == ["host emulation"]
