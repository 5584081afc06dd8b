"""load_tests.gpu_memory: reading nvidia-smi's answers (the sampling itself runs on the GPU machine's bench)."""

from load_tests.gpu_memory import PeakGpuMemory, others_mib, total_mib


def test_the_bench_process_is_left_out_of_the_sum():
    apps = "4242, 3712\n4243, 520\n999, 800\n"
    assert others_mib(apps, own_pid=999) == 3712 + 520
    assert others_mib("999, 800\n", own_pid=999) is None  # only the bench itself: no server listed
    assert others_mib("", own_pid=999) is None
    assert others_mib("[N/A], [N/A]\n", own_pid=999) is None  # no process list in this namespace


def test_totals_sum_the_gpus_and_refuse_what_is_not_a_number():
    assert total_mib("1024\n2048\n") == 3072
    assert total_mib("[N/A]\n") is None and total_mib("") is None


def test_without_nvidia_smi_the_peak_is_none(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    memory = PeakGpuMemory(interval=0.01).start()
    assert memory.stop() is None
