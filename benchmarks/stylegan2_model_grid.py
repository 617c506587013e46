"""Real held-out W2S crops beside samples of saved StyleGAN2 model files (the files users get),
from the same fixed latents: ``stylegan2_model_grid.py OUT.png MODEL.safetensors ...``."""
import sys, numpy as np, torch, matplotlib
matplotlib.use("Agg"); import matplotlib.pyplot as plt
sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from stylegan2_w2s import load_fovs, fixed_crops, DATA, fov_range
from napari_gan.core.generation import load_generator
from napari_gan.core.families.stylegan2 import ImageSet, image_grid
torch.set_num_threads(2)
planes,_ = load_fovs(DATA, fov_range("1-48")); held,_ = load_fovs(DATA, fov_range("49-60"))
norm = ImageSet.build(planes, 64).norm
out = sys.argv[1]; n = 6
panels = [("real held-out", fixed_crops(held, norm, n*n, 64, 1234))]
for path in sys.argv[2:]:
    g = load_generator(path, "cpu")
    z = torch.randn(n*n, g.z_dim, generator=torch.Generator().manual_seed(5))
    with torch.no_grad(): panels.append((path.split("crops_")[-1], g.G(z, noise_mode="const").numpy()))
fig, axes = plt.subplots(1, len(panels), figsize=(4.2*len(panels), 4.5))
for ax, (t, im) in zip(axes, panels):
    ax.imshow(image_grid(np.clip(im, -1, 1), n), cmap="gray", vmin=-1, vmax=1); ax.set_title(t, fontsize=9); ax.axis("off")
fig.tight_layout(); fig.savefig(out, dpi=90)
