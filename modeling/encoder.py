"""The V-JEPA 2 video encoder: tubelet embedding, RoPE ViT blocks, final LayerNorm.

`VisionEncoder` takes float video `(B, C, T, H, W)` on the tubelet grid (T a
multiple of the tubelet size, H and W multiples of the patch size) and returns
tokens `(B, N, D)` ordered t, h, w, with no CLS token and no additive position
embedding: positions enter only through 3D RoPE on q and k in every block.

With `context_indices` `(B, K)` only those tokens go through the blocks, rotated
by their true positions: the masked pretraining forward, which costs roughly
`K / N` of the full one.

Parameter names equal the official `VisionTransformer`'s (`patch_embed.proj`,
`blocks.{i}.*`, `norm`), so official checkpoints load after prefix stripping.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from modeling.config import DictConfig
from modeling.layers import Block, run_blocks
from modeling.rope import RopeTables, check_rope_heads, rope_for_grid, rope_for_indices


@dataclass(frozen=True)
class EncoderConfig(DictConfig):
    """Shape of a V-JEPA 2 encoder; presets below."""

    width: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_hidden: int = 4096
    patch_size: int = 16
    tubelet_size: int = 2
    in_channels: int = 3
    qkv_bias: bool = True
    norm_eps: float = 1e-6
    drop_path: float = 0.0
    activation_checkpointing: bool = False

    def __post_init__(self) -> None:
        check_rope_heads(self.width, self.num_heads)

    @property
    def head_dim(self) -> int:
        return self.width // self.num_heads


def tiny() -> EncoderConfig:
    """Tests and the CPU demo: 192 wide, 6 deep, 3 heads of 64 (the ViT-L RoPE split)."""
    return EncoderConfig(width=192, depth=6, num_heads=3, mlp_hidden=768)


def small() -> EncoderConfig:
    """A ViT-S-sized encoder (384 x 12, 6 heads of 64) for benchmarks and quick runs."""
    return EncoderConfig(width=384, depth=12, num_heads=6, mlp_hidden=1536)


def vitl() -> EncoderConfig:
    """ViT-L: 1024 wide, 24 deep, 16 heads."""
    return EncoderConfig(width=1024, depth=24, num_heads=16, mlp_hidden=4096)


def vith() -> EncoderConfig:
    """ViT-H: 1280 wide, 32 deep, 16 heads."""
    return EncoderConfig(width=1280, depth=32, num_heads=16, mlp_hidden=5120)


def vitg() -> EncoderConfig:
    """ViT-g: 1408 wide, 40 deep, 22 heads, MLP 6144 (ratio 48/11)."""
    return EncoderConfig(width=1408, depth=40, num_heads=22, mlp_hidden=6144)


PRESETS = {"tiny": tiny, "small": small, "vitl": vitl, "vith": vith, "vitg": vitg}


def preset(name: str) -> EncoderConfig:
    """The encoder preset called `name` (tiny, small, vitl, vith, vitg)."""
    try:
        return PRESETS[name]()
    except KeyError:
        raise ValueError(
            f"unknown encoder preset {name!r}; choose from {sorted(PRESETS)}"
        ) from None


class PatchEmbed3D(nn.Module):
    """Non-overlapping tubelets (tubelet x patch x patch) to tokens with one Conv3d."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        kernel = (config.tubelet_size, config.patch_size, config.patch_size)
        self.proj = nn.Conv3d(config.in_channels, config.width, kernel_size=kernel, stride=kernel)

    def forward(self, video: Tensor) -> Tensor:
        tokens = self.proj(video)  # (B, D, T', H', W')
        return tokens.flatten(2).transpose(1, 2)  # (B, N, D)


class VisionEncoder(nn.Module):
    """V-JEPA 2 encoder; see the module docstring."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.patch_embed = PatchEmbed3D(config)
        rates = torch.linspace(0.0, config.drop_path, config.depth).tolist()
        self.blocks = nn.ModuleList(
            Block(
                config.width,
                config.num_heads,
                config.mlp_hidden,
                qkv_bias=config.qkv_bias,
                norm_eps=config.norm_eps,
                drop_path=rate,
            )
            for rate in rates
        )
        self.norm = nn.LayerNorm(config.width, eps=config.norm_eps)

    def grid(self, video_shape: torch.Size | tuple[int, ...]) -> tuple[int, int, int]:
        """Token grid `(T', H', W')` of a video of shape `(B, C, T, H, W)`; clear error off-grid."""
        if len(video_shape) != 5:
            raise ValueError(f"video must be (B, C, T, H, W), got shape {tuple(video_shape)}")
        _, channels, frames, height, width = video_shape
        config = self.config
        if channels != config.in_channels:
            raise ValueError(
                f"video has {channels} channels, the encoder expects {config.in_channels}"
            )
        if frames == 1:
            frames = config.tubelet_size  # a single image is repeated to fill one tubelet
        if frames % config.tubelet_size or height % config.patch_size or width % config.patch_size:
            raise ValueError(
                f"video T={frames}, H={height}, W={width} is off the tubelet grid: T must be a "
                f"multiple of {config.tubelet_size}, H and W multiples of {config.patch_size}"
            )
        if height == 0 or width == 0 or frames == 0:
            raise ValueError(f"video has an empty dimension: {tuple(video_shape)}")
        return (
            frames // config.tubelet_size,
            height // config.patch_size,
            width // config.patch_size,
        )

    def embed(self, video: Tensor) -> Tensor:
        """Tubelet tokens before the blocks: `(B, C, T, H, W) -> (B, N, D)`."""
        self.grid(video.shape)
        if not video.is_floating_point():
            raise ValueError(f"video must be a float tensor, got {video.dtype}")
        if video.shape[2] == 1:
            video = video.expand(-1, -1, self.config.tubelet_size, -1, -1)
        return self.patch_embed(video.to(self.patch_embed.proj.weight.dtype))  # (B, N, D)

    def forward(self, video: Tensor, context_indices: Tensor | None = None) -> Tensor:
        """Encode `video` `(B, C, T, H, W)`: all tokens `(B, N, D)`, or only `context_indices`
        `(B, K)` (flat t, h, w indices) -> `(B, K, D)`."""
        grid = self.grid(video.shape)
        tokens = self.embed(video)  # (B, N, D)
        head_dim = self.config.head_dim
        rope: RopeTables
        if context_indices is None:
            rope = rope_for_grid(grid, head_dim, tokens.device, tokens.dtype)
        else:
            check_indices(context_indices, tokens.shape[0], tokens.shape[1])
            context_indices = context_indices.to(tokens.device, torch.long)
            index = context_indices.unsqueeze(-1).expand(-1, -1, tokens.shape[-1])  # (B, K, D)
            tokens = tokens.gather(1, index)  # (B, K, D)
            rope = rope_for_indices(context_indices, grid, head_dim, tokens.dtype)
        tokens = run_blocks(
            self.blocks, tokens, rope, checkpointing=self.config.activation_checkpointing
        )
        return self.norm(tokens)  # (B, N or K, D)


def check_indices(
    indices: Tensor, batch: int, num_tokens: int, name: str = "context_indices"
) -> None:
    """`indices` must be an integer `(batch, K)` tensor with values in `[0, num_tokens)`."""
    if indices.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"{name} must be an integer (long) tensor, got {indices.dtype}")
    if indices.ndim != 2 or indices.shape[0] != batch:
        raise ValueError(f"{name} must have shape ({batch}, K), got {tuple(indices.shape)}")
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= num_tokens):
        raise ValueError(f"{name} must lie in [0, {num_tokens}) for this clip")
