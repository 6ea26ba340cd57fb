"""What a float result depends on besides the code, the seed and the thread count: the machine.

Same code, seed, threads and device give bit-identical values only on the same CPU capability
(docs/reproducibility.md): ATen picks its vectorised kernels at run time by the instruction set it
finds (`torch.backends.cpu.get_cpu_capability()`: DEFAULT, AVX2, AVX512, ...; `ATEN_CPU_CAPABILITY`
forces a lower one), and MKL / oneDNN pick their own code paths, so a machine with AVX-512 or AMX
sums in another order than one with AVX2. On CUDA the GPU, its driver, the CUDA and cuDNN versions
and the determinism settings (`torch.use_deterministic_algorithms`, cuDNN's `deterministic` and
`benchmark`, TF32) decide the kernels. `machine_provenance` records all of it for config.json;
none of it enters a config hash (it says where a number was measured, not what was measured).
"""
from __future__ import annotations

import os
import platform
import re
import subprocess

ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512dq", "avx512bw", "avx512vl",
             "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "asimd", "sve")
"""CPU flags (as /proc/cpuinfo spells them) that decide which kernels ATen, MKL and oneDNN run."""


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            text = f.read().split("\n\n", 1)[0]
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out.setdefault(key.strip(), value.strip())
    return out


def cpu_model() -> str:
    """`AMD EPYC 7B13`, `Intel(R) Xeon(R) Platinum 8480+`, ...: /proc/cpuinfo, else `platform`."""
    info = _cpuinfo()
    return (info.get("model name") or info.get("Model") or info.get("Hardware") or platform.processor()
            or platform.machine() or "unknown")


def cpu_flags() -> str:
    """The `ISA_FLAGS` this CPU has, space-separated (empty where /proc/cpuinfo is not readable)."""
    have = set((_cpuinfo().get("flags") or _cpuinfo().get("Features") or "").split())
    return " ".join(f for f in ISA_FLAGS if f in have)


def cpu_capability() -> str:
    """ATen's CPU capability in use (`DEFAULT`, `AVX2`, `AVX512`, ...; `unknown` on an old torch)."""
    import torch

    get = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", None)
    return str(get()) if get is not None else "unknown"


def torch_build() -> dict[str, str]:
    """The BLAS, LAPACK, MKL, oneDNN (MKL-DNN) and OpenMP that torch was built with
    (`torch.__config__.show()`)."""
    import torch

    text = torch.__config__.show()
    out = {}
    for key, pattern in (("blas", r"BLAS_INFO=([^,\s]+)"), ("lapack", r"LAPACK_INFO=([^,\s]+)"),
                         ("mkl", r"Math Kernel Library Version ([^\n]+?) for"), ("onednn", r"MKL-DNN (v[^\n]+)"),
                         ("openmp", r"- OpenMP ([^\n]+)")):
        m = re.search(pattern, text)
        out[key] = m.group(1).strip() if m else ""
    out["mkldnn_enabled"] = str(bool(torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled))
    return out


def thread_pools() -> list[dict[str, str]]:
    """The BLAS / OpenMP thread pools loaded in this process (threadpoolctl): library, version, threads,
    and the kernel architecture OpenBLAS chose (`Haswell`, `SkylakeX`, ...)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:   # pragma: no cover - threadpoolctl comes with scikit-learn
        return []
    keys = ("user_api", "internal_api", "version", "num_threads", "threading_layer", "architecture")
    return [{k: "" if p.get(k) is None else str(p.get(k)) for k in keys} for p in threadpool_info()]


def _driver_version(index: int) -> str:
    """The NVIDIA driver (`nvidia-smi`), else the CUDA driver API version torch reports, else empty."""
    try:
        r = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader", "-i", str(index)],
                           capture_output=True, text=True, timeout=10, check=False)
        if r.returncode == 0 and r.stdout.strip():
            return r.stdout.strip().splitlines()[0]
    except (OSError, subprocess.TimeoutExpired):
        pass
    import torch

    get = getattr(torch._C, "_cuda_getDriverVersion", None)
    try:
        v = int(get()) if get is not None else 0
    except (RuntimeError, TypeError, ValueError):
        v = 0
    return f"CUDA driver API {v // 1000}.{v % 1000 // 10}" if v else ""


def cuda_provenance(device: str) -> dict[str, str]:
    """GPU name and compute capability, driver, CUDA and cuDNN versions, and the determinism settings."""
    import torch

    dev = torch.device(device)
    index = dev.index if dev.index is not None else torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    cudnn = torch.backends.cudnn
    return {"gpu": props.name, "gpu_capability": f"{props.major}.{props.minor}",
            "gpu_memory_gib": f"{props.total_memory / 2**30:.1f}", "driver": _driver_version(index),
            "cuda": str(torch.version.cuda), "cudnn": str(cudnn.version() if cudnn.is_available() else ""),
            "deterministic_algorithms": str(torch.are_deterministic_algorithms_enabled()),
            "cudnn_deterministic": str(cudnn.deterministic), "cudnn_benchmark": str(cudnn.benchmark),
            "tf32_matmul": str(torch.backends.cuda.matmul.allow_tf32), "tf32_cudnn": str(cudnn.allow_tf32),
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG", "")}


def machine_provenance(device: str = "cpu") -> dict:
    """Everything above for config.json's `provenance.machine` (JSON: strings, a list of pools, and a
    `cuda` block on a CUDA device)."""
    import torch

    out = {"cpu": cpu_model(), "cpu_flags": cpu_flags(), "cpu_capability": cpu_capability(),
           "aten_cpu_capability_env": os.environ.get("ATEN_CPU_CAPABILITY", ""),
           "machine": platform.machine(), "os": platform.platform(terse=True),
           "interop_threads": str(torch.get_num_interop_threads()),
           "torch_build": torch_build(), "thread_pools": thread_pools()}
    if str(device).startswith("cuda") and torch.cuda.is_available():
        out["cuda"] = cuda_provenance(device)
    return out


BOARD_FIELDS = ("cpu", "cpu_capability", "threads")
"""Machine columns a board row copies from its run's `provenance` (optional: rows of runs recorded
before them leave them empty)."""


def board_fields(provenance: dict) -> dict[str, str]:
    """`BOARD_FIELDS` of a run's recorded `provenance` ("" for what it does not record)."""
    m = provenance.get("machine") if isinstance(provenance.get("machine"), dict) else {}
    return {"cpu": str(m.get("cpu", "")), "cpu_capability": str(m.get("cpu_capability", "")),
            "threads": str(provenance.get("torch_threads", ""))}
