"""Feature networks for LPIPS (AlexNet / VGG16, Zhang et al. 2018) and FID (Inception-v3, Heusel et al. 2017).

Written from the published architectures in plain torch (torchvision cannot be imported beside this torch);
parameter names follow the common public checkpoints so their state dicts load unchanged.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

# Per conv: (out-channels, kernel, stride, padding, max-pool before it); LPIPS taps every AlexNet ReLU.
_ALEX = ((64, 11, 4, 2, False), (192, 5, 1, 2, True), (384, 3, 1, 1, True), (256, 3, 1, 1, False),
         (256, 3, 1, 1, False))
_VGG16 = ((64, False), (64, False), (128, True), (128, False), (256, True), (256, False), (256, False),
          (512, True), (512, False), (512, False), (512, True), (512, False), (512, False))
_VGG16_TAPS = (1, 3, 6, 9, 12)  # conv indices whose ReLU outputs LPIPS compares (relu1_2 ... relu5_3)


class LPIPSTrunk(nn.Module):
    """AlexNet or VGG16 `features` stack returning the ReLU activations LPIPS compares."""

    def __init__(self, arch: str = "alex"):
        super().__init__()
        layers: list[nn.Module] = []
        taps: list[int] = []
        c_in = 3
        if arch == "alex":
            for c, k, s, p, pool in _ALEX:
                if pool:
                    layers.append(nn.MaxPool2d(3, 2))
                layers += [nn.Conv2d(c_in, c, k, s, p), nn.ReLU(inplace=False)]
                taps.append(len(layers) - 1)
                c_in = c
        elif arch == "vgg":
            for i, (c, pool) in enumerate(_VGG16):
                if pool:
                    layers.append(nn.MaxPool2d(2, 2))
                layers += [nn.Conv2d(c_in, c, 3, 1, 1), nn.ReLU(inplace=False)]
                if i in _VGG16_TAPS:
                    taps.append(len(layers) - 1)
                c_in = c
        else:
            raise ValueError(f"unknown LPIPS backbone {arch!r}: use 'alex' or 'vgg'")
        self.arch, self.features, self.taps = arch, nn.Sequential(*layers), tuple(taps)

    @property
    def channels(self) -> list[int]:
        return [self.features[i - 1].out_channels for i in self.taps]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                out.append(x)
            if i >= self.taps[-1]:
                break
        return out


class BasicConv(nn.Module):
    """conv (no bias) + batch norm (eps 1e-3) + ReLU, the unit Inception-v3 is built from."""

    def __init__(self, c_in: int, c_out: int, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def _avg(x: torch.Tensor, fid: bool) -> torch.Tensor:
    # The TF graph the FID statistics come from excludes padding from its 3x3 average pools.
    return F.avg_pool2d(x, 3, 1, 1, count_include_pad=not fid)


class InceptionA(nn.Module):
    def __init__(self, c_in: int, pool: int, fid: bool):
        super().__init__()
        self.fid = fid
        self.branch1x1 = BasicConv(c_in, 64, 1)
        self.branch5x5_1, self.branch5x5_2 = BasicConv(c_in, 48, 1), BasicConv(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv(c_in, 64, 1)
        self.branch3x3dbl_2 = BasicConv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv(96, 96, 3, padding=1)
        self.branch_pool = BasicConv(c_in, pool, 1)

    def forward(self, x):
        return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
                          self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          self.branch_pool(_avg(x, self.fid))], 1)


class InceptionB(nn.Module):
    def __init__(self, c_in: int):
        super().__init__()
        self.branch3x3 = BasicConv(c_in, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv(c_in, 64, 1)
        self.branch3x3dbl_2 = BasicConv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv(96, 96, 3, stride=2)

    def forward(self, x):
        return torch.cat([self.branch3x3(x), self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          F.max_pool2d(x, 3, 2)], 1)


class InceptionC(nn.Module):
    def __init__(self, c_in: int, c7: int, fid: bool):
        super().__init__()
        self.fid = fid
        row, col = ((1, 7), (0, 3)), ((7, 1), (3, 0))
        self.branch1x1 = BasicConv(c_in, 192, 1)
        self.branch7x7_1 = BasicConv(c_in, c7, 1)
        self.branch7x7_2 = BasicConv(c7, c7, row[0], padding=row[1])
        self.branch7x7_3 = BasicConv(c7, 192, col[0], padding=col[1])
        self.branch7x7dbl_1 = BasicConv(c_in, c7, 1)
        self.branch7x7dbl_2 = BasicConv(c7, c7, col[0], padding=col[1])
        self.branch7x7dbl_3 = BasicConv(c7, c7, row[0], padding=row[1])
        self.branch7x7dbl_4 = BasicConv(c7, c7, col[0], padding=col[1])
        self.branch7x7dbl_5 = BasicConv(c7, 192, row[0], padding=row[1])
        self.branch_pool = BasicConv(c_in, 192, 1)

    def forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for i in range(1, 6):
            d = getattr(self, f"branch7x7dbl_{i}")(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_avg(x, self.fid))], 1)


class InceptionD(nn.Module):
    def __init__(self, c_in: int):
        super().__init__()
        self.branch3x3_1, self.branch3x3_2 = BasicConv(c_in, 192, 1), BasicConv(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv(c_in, 192, 1)
        self.branch7x7x3_2 = BasicConv(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv(192, 192, 3, stride=2)

    def forward(self, x):
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7, F.max_pool2d(x, 3, 2)], 1)


class InceptionE(nn.Module):
    def __init__(self, c_in: int, pool_mode: str):
        super().__init__()
        self.pool_mode = pool_mode  # "avg" (torchvision), "avg_nopad" / "max" (the FID graph's two E blocks)
        self.branch1x1 = BasicConv(c_in, 320, 1)
        self.branch3x3_1 = BasicConv(c_in, 384, 1)
        self.branch3x3_2a = BasicConv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv(c_in, 448, 1)
        self.branch3x3dbl_2 = BasicConv(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv(c_in, 192, 1)

    def forward(self, x):
        b3 = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        if self.pool_mode == "max":
            pooled = F.max_pool2d(x, 3, 1, 1)
        else:
            pooled = _avg(x, self.pool_mode == "avg_nopad")
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(b3), self.branch3x3_2b(b3),
                          self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d), self.branch_pool(pooled)], 1)


class InceptionV3Pool(nn.Module):
    """Inception-v3 up to the 2048-d global average pool (FID's pool3 features); `fid=True` is the TF-FID variant."""

    def __init__(self, fid: bool = True):
        super().__init__()
        self.fid = fid
        self.Conv2d_1a_3x3 = BasicConv(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv(80, 192, 3)
        self.Mixed_5b, self.Mixed_5c, self.Mixed_5d = (InceptionA(192, 32, fid), InceptionA(256, 64, fid),
                                                       InceptionA(288, 64, fid))
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, 128, fid)
        self.Mixed_6c, self.Mixed_6d = InceptionC(768, 160, fid), InceptionC(768, 160, fid)
        self.Mixed_6e = InceptionC(768, 192, fid)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, "avg_nopad" if fid else "avg")
        self.Mixed_7c = InceptionE(2048, "max" if fid else "avg")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B,3,H,W] in [0,1] -> [B,2048]; resized to 299x299 and scaled to [-1,1] as the FID graph expects."""
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False) * 2 - 1
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(F.max_pool2d(x, 3, 2)))
        x = F.max_pool2d(x, 3, 2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return x.mean(dim=(2, 3))


def load_state(module: nn.Module, state: dict[str, torch.Tensor], prefix: str = "") -> list[str]:
    """Copy matching tensors into `module`; raises if any of its parameters is missing; returns ignored keys."""
    own = module.state_dict()
    picked = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix) and k[len(prefix):] in own}
    missing = [k for k in own if k not in picked and not k.endswith("num_batches_tracked")]
    if missing:
        raise ValueError(f"checkpoint lacks {len(missing)} tensors of {type(module).__name__}, e.g. {missing[:3]}")
    for k, v in picked.items():
        if v.shape != own[k].shape:
            raise ValueError(f"checkpoint tensor {k} has shape {tuple(v.shape)}, expected {tuple(own[k].shape)}")
    module.load_state_dict(picked, strict=False)
    return [k for k in state if k[len(prefix):] not in own]
