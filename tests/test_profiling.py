"""Stage profile: nested stages are not double counted; UNet evaluations go to the current stage."""
import time

from dreammover.profiling import StageProfile


def test_nested_stage_time_is_not_counted_twice():
    p = StageProfile()
    with p.stage("outer"):
        time.sleep(0.02)
        with p.stage("inner"):
            time.sleep(0.05)
            p.count_unet(3)
        p.count_unet(2)
    assert p.seconds["inner"] >= 0.05
    assert 0.02 <= p.seconds["outer"] < 0.05
    assert p.unet_evals == {"inner": 3, "outer": 2}
    assert abs(p.total_seconds - (p.seconds["inner"] + p.seconds["outer"])) < 1e-9
