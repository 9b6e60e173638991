"""An independent re-statement of LDAM-DRW's CIFAR-LT sampling, shared by the data tests."""

import numpy as np


def ldam_pick(targets: np.ndarray, img_num_per_cls: list[int]) -> np.ndarray:
    """LDAM-DRW's IMBALANCECIFAR10.gen_imbalanced_data, literally (global numpy RNG, seed 0, restored)."""
    state = np.random.get_state()
    try:
        np.random.seed(0)
        picked = []
        for the_class, the_img_num in zip(np.unique(targets), img_num_per_cls):
            idx = np.where(targets == the_class)[0]
            np.random.shuffle(idx)
            picked.append(idx[:the_img_num])
        return np.concatenate(picked)
    finally:
        np.random.set_state(state)
