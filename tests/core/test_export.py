"""bioimage.io export: packages of tiny trained models pass bioimage.io's own test
(``bioimageio.core.test_model``) offline, reproduce ``napari-gan predict`` with both weight
formats, open in ``napari-gan predict``/``generate``; bad input gives one clear error.

Tolerance: the package's outputs (TorchScript and state_dict weights, run by bioimageio.core)
match ``napari-gan predict --no-amp`` within 1e-5 of the output's intensity range (measured:
a few 1e-7, float32 rounding); the package itself declares 1e-3 for other machines and GPUs.
"""

import socket
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import tifffile
import torch

from napari_gan.cli import main
from tests.core.conftest import smooth_image

TINY = ["--steps", "2", "--depth", "1", "--width", "4", "--disc-width", "4", "--disc-layers", "1",
        "--patch", "16", "--batch", "2", "--quiet"]
AUTHORS = ["--authors", "Ada Lovelace; Alan Turing"]
TOLERANCE = 1e-5   # of the output's intensity range
# bioimageio.spec re-reads a package's file list outside its root and says so; harmless
pytestmark = pytest.mark.filterwarnings("ignore:Found mapping with 'source':UserWarning")


# ----------------------------------------------------------------------- helpers
@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Every test runs with the network cut: any connection attempt fails the test."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args[:2])
        raise OSError("network access during a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    yield
    assert not attempts, f"tried to reach the network: {attempts}"


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_clean_error(code, err, pattern):
    assert code == 2, err
    assert err.startswith("error: ") and "Traceback" not in err and err.count("\n") == 1, err
    assert pattern.lower() in err.lower(), err


def write_pair(folder, channels=1, scale=1, shape=(48, 48)):
    folder.mkdir(parents=True, exist_ok=True)
    clean = np.stack([smooth_image((shape[0] * scale, shape[1] * scale), seed=c) + 20 for c in range(channels)])
    low = clean[:, ::scale, ::scale]
    noisy = low + np.random.default_rng(1).normal(0, 8, low.shape)
    kw = dict(imagej=True, metadata={"axes": "CYX"}) if channels > 1 else {}
    squeeze = (lambda a: a) if channels > 1 else (lambda a: a[0])
    tifffile.imwrite(folder / "in.tif", squeeze(noisy).astype(np.float32), **kw)
    tifffile.imwrite(folder / "gt.tif", squeeze(clean).astype(np.float32), **kw)
    return folder / "in.tif", folder / "gt.tif"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tiny Pix2Pix models trained for 2 steps through the command line: denoising, x2
    super-resolution and a 2-channel denoiser."""
    root = tmp_path_factory.mktemp("runs")
    made = {}
    for name, channels, extra in (("denoise", 1, []), ("sr", 1, ["--task", "sr", "--scale", "2"]),
                                  ("two", 2, ["--channels", "2"])):
        inp, gt = write_pair(root / name, channels, 2 if name == "sr" else 1)
        assert main(["train", "pix2pix", "--input", str(inp), "--target", str(gt), "--out",
                     str(root / name / "run"), *extra, *TINY]) == 0
        made[name] = root / name / "run"
    return made


def zoo_test(package):
    """bioimage.io's own test of a package, in this process (offline: the test would look up
    cited web addresses other than example.com, so the packages tested cite DOIs)."""
    from bioimageio.core import test_model

    summary = test_model(str(package), devices=["cpu"])
    failed = [f"{d.name}: {[e.msg[:300] for e in d.errors]}" for d in summary.details if d.status != "passed"]
    assert summary.status == "passed" and not failed, failed
    tested = {d.loc[1] for d in summary.details if d.name.startswith("Reproduce test outputs")}
    assert tested == {"pytorch_state_dict", "torchscript"}
    return summary


def package_outputs(package):
    """The package's output on its test input, run by bioimageio.core with each weight format:
    ``{format: (as the zoo test runs it, with the halo padding of bioimageio.core.predict)}``."""
    from bioimageio.core import create_prediction_pipeline
    from bioimageio.core.digest_spec import get_test_input_sample

    descr = rdf(package)
    out_id = str(descr.outputs[0].id)
    results = {}
    for wf in ("pytorch_state_dict", "torchscript"):
        with create_prediction_pipeline(descr, weight_format=wf, devices=["cpu"]) as pp:
            plain = pp.predict_sample_without_blocking(get_test_input_sample(descr), skip_input_padding=True,
                                                       skip_output_cropping=True)
            padded = pp.predict_sample_without_blocking(get_test_input_sample(descr))
        results[wf] = (plain.members[out_id].data.values, padded.members[out_id].data.values)
    return results


def read_npy(package, name):
    import io

    with zipfile.ZipFile(package) as zf:
        return np.load(io.BytesIO(zf.read(name)))


def rdf(package):
    """The package's description (read without fetching its cited web addresses)."""
    from bioimageio.spec import load_description

    return load_description(str(package), perform_io_checks=False)


def napari_gan_predict(capsys, tmp_path, package, x, *extra):
    """``napari-gan predict --model PACKAGE`` on the test input ``x`` (1, C, H, W)."""
    c = x.shape[1]
    kw = dict(imagej=True, metadata={"axes": "CYX"}) if c > 1 else {}
    tifffile.imwrite(tmp_path / "test_in.tif", x[0] if c > 1 else x[0, 0], **kw)
    code, out, err = run_cli(capsys, "predict", "--model", package, "--input", tmp_path / "test_in.tif",
                             "--output", tmp_path / "test_pred.tif", "--no-amp", *extra)
    assert code == 0, err
    pred = tifffile.imread(tmp_path / "test_pred.tif")
    return pred if c > 1 and pred.ndim == 3 else pred[None]


def check_matches_predict(capsys, tmp_path, package):
    x, y = read_npy(package, "test_input.npy"), read_npy(package, "test_output.npy")
    pred = napari_gan_predict(capsys, tmp_path, package, x)
    span = float(np.ptp(y))
    assert pred.shape == y.shape[1:]
    assert np.abs(pred - y[0]).max() <= TOLERANCE * span     # the test output is napari-gan predict's
    halo = rdf(package).outputs[0].axes[2].halo // (y.shape[-1] // x.shape[-1])
    padded_pred = napari_gan_predict(capsys, tmp_path, package, x, "--overlap", halo, "--tile", 4096)
    for wf, (plain, padded) in package_outputs(package).items():
        assert plain.shape == y.shape, wf
        assert np.abs(plain[0] - pred).max() <= TOLERANCE * span, wf
        # bioimageio.core.predict mirrors the input by the halo first: napari-gan predict with
        # that overlap does the same
        assert np.abs(padded[0] - padded_pred).max() <= TOLERANCE * span, wf


# -------------------------------------------------------------------- the packages
def test_denoising_package_passes_the_zoo_test_and_equals_predict(runs, tmp_path, capsys):
    out = tmp_path / "denoise.zip"
    code, stdout, err = run_cli(capsys, "export", "--model", runs["denoise"], "--output", out, *AUTHORS,
                                "--cite", "10.1038/s41592-018-0216-7", "--cite", "https://example.com/paper",
                                "--no-check")
    assert code == 0, err
    assert "bioimage.io package written" in stdout
    zoo_test(out)
    check_matches_predict(capsys, tmp_path, out)

    descr = rdf(out)
    assert descr.name == "napari-gan Pix2Pix denoising" and [a.name for a in descr.authors] == ["Ada Lovelace",
                                                                                            "Alan Turing"]
    assert str(descr.license) == "CC-BY-4.0"
    assert [str(c.doi) for c in descr.cite if c.doi][1] == "10.1038/s41592-018-0216-7"
    axes = descr.inputs[0].axes
    assert [str(a.id) for a in axes] == ["batch", "channel", "y", "x"]
    assert axes[2].size.step == 2 and axes[2].size.min % 2 == 0          # multiples of 2**depth
    assert [p.id for p in descr.inputs[0].preprocessing] == ["ensure_dtype", "scale_linear", "ensure_dtype"]
    assert [p.id for p in descr.outputs[0].postprocessing] == ["scale_linear", "ensure_dtype"]
    header = descr.config.model_extra["napari_gan"]
    low, high = header["normalization"]["input"]["low"][0], header["normalization"]["input"]["high"][0]
    gain = descr.inputs[0].preprocessing[1].kwargs.gain[0]
    assert gain == pytest.approx(1 / (high - low))
    x = read_npy(out, "test_input.npy")
    assert x.shape == (1, 1, 128, 128) and x.dtype == np.float32       # the synthetic default
    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
        readme = zf.read("README.md").decode()
    assert {"cover.png", "README.md", "napari_gan_model.safetensors", "weights.pt", "weights_torchscript.pt",
            "napari_gan_unet.py", "rdf.yaml"} <= names
    for words in ("## Validation", "_psnr |", "Training steps: 2", "scale_linear", "napari-gan predict",
                  "synthetic 128x128 image"):
        assert words in readme, words


def test_super_resolution_x2_package(runs, tmp_path, capsys):
    big = np.random.default_rng(3).gamma(4, 20, (100, 90)).astype(np.float32)
    tifffile.imwrite(tmp_path / "sample.tif", big)
    from matplotlib.image import imsave

    imsave(tmp_path / "my_cover.png", big, cmap="gray")
    out = tmp_path / "sr.zip"
    code, _, err = run_cli(capsys, "export", "--model", runs["sr"] / "model.safetensors", "--output", out,
                           *AUTHORS, "--name", "Tiny SR x2 (test)", "--description", "A test.",
                           "--test-input", tmp_path / "sample.tif", "--cover", tmp_path / "my_cover.png",
                           "--no-check")
    assert code == 0, err
    with zipfile.ZipFile(out) as zf:
        assert zf.read("cover.png") == (tmp_path / "my_cover.png").read_bytes()
    zoo_test(out)
    check_matches_predict(capsys, tmp_path, out)
    descr = rdf(out)
    x, y = read_npy(out, "test_input.npy"), read_npy(out, "test_output.npy")
    assert y.shape[-2:] == (2 * x.shape[-2], 2 * x.shape[-1])
    mn, step = descr.inputs[0].axes[2].size.min, descr.inputs[0].axes[2].size.step
    assert all((s - mn) % step == 0 and s <= 100 for s in x.shape[-2:])   # a valid crop of the given image
    y_axis = descr.outputs[0].axes[2]
    assert y_axis.scale == 0.5 and str(y_axis.size.axis_id) == "y"          # pixel size, not magnification
    assert y_axis.halo % 2 == 0 and y_axis.halo > 0
    (th, tw), y0, x0 = x.shape[-2:], (100 - x.shape[-2]) // 2, (90 - x.shape[-1]) // 2
    assert np.array_equal(x[0, 0], big[y0:y0 + th, x0:x0 + tw])            # its centre


def test_two_channel_package(runs, tmp_path, capsys):
    from napari_gan.core.export import check_package, export_bioimageio

    steps = []
    out = export_bioimageio(runs["two"], tmp_path / "two.zip", "Two channel test", "A test.", ["Ada Lovelace"],
                            progress=lambda i, n, m: steps.append((i, n)))
    assert steps[0] == (0, 5) and steps[-1] == (5, 5)
    passed, summary = check_package(out)
    assert passed, summary
    check_matches_predict(capsys, tmp_path, out)
    descr = rdf(out)
    assert descr.inputs[0].axes[1].size == 2 and descr.outputs[0].axes[1].size == 2
    assert len(descr.inputs[0].preprocessing[1].kwargs.gain) == 2


def test_stylegan2_package(tmp_path, capsys):
    tifffile.imwrite(tmp_path / "img.tif", smooth_image((48, 48)))
    assert main(["train", "stylegan2", "--images", str(tmp_path / "img.tif"), "--out", str(tmp_path / "sg"),
                 "--steps", "2", "--resolution", "8", "--size", "small", "--batch", "2", "--z-dim", "8",
                 "--channel-base", "64", "--channel-max", "8", "--eval-images", "4", "--quiet"]) == 0
    out = tmp_path / "sg.zip"
    code, _, err = run_cli(capsys, "export", "--model", tmp_path / "sg", "--output", out, *AUTHORS, "--no-check",
                           "--direction", "b2a")
    assert_clean_error(code, err, "--direction applies to CycleGAN models")   # not silently ignored
    assert not out.exists()
    code, _, err = run_cli(capsys, "export", "--model", tmp_path / "sg", "--output", out, *AUTHORS, "--no-check")
    assert code == 0, err
    zoo_test(out)
    descr = rdf(out)
    assert [a.type for a in descr.inputs[0].axes] == ["batch", "index"] and descr.inputs[0].axes[1].size == 8
    assert [a.type for a in descr.outputs[0].axes] == ["batch", "channel", "space", "space"]
    z, y = read_npy(out, "test_input.npy"), read_npy(out, "test_output.npy")
    np.save(tmp_path / "z.npy", z)
    code, _, err = run_cli(capsys, "generate", "--model", out, "--latents", tmp_path / "z.npy",
                           "--output", tmp_path / "gen.tif")
    assert code == 0, err
    gen = tifffile.imread(tmp_path / "gen.tif")
    assert np.abs(gen - y[:, 0]).max() <= TOLERANCE * float(np.ptp(y))
    for wf, (plain, _) in package_outputs(out).items():
        assert np.abs(plain - y).max() <= TOLERANCE * float(np.ptp(y)), wf
    code, _, err = run_cli(capsys, "predict", "--model", out, "--input", tmp_path / "img.tif",
                           "--output", tmp_path / "p.tif")
    assert_clean_error(code, err, "napari-gan generate")


# ----------------------------------------------------------------------- CycleGAN
@pytest.fixture(scope="module")
def cyclegan_run(tmp_path_factory):
    """A tiny CycleGAN (ResNet generators, per-image normalisation: the defaults) trained for
    2 steps through the command line on two unpaired images."""
    root = tmp_path_factory.mktemp("cyclegan")
    tifffile.imwrite(root / "a.tif", smooth_image((48, 48), seed=1).astype(np.float32))
    tifffile.imwrite(root / "b.tif", (200 - smooth_image((40, 44), seed=2)).astype(np.float32))
    assert main(["train", "cyclegan", "--a", str(root / "a.tif"), "--b", str(root / "b.tif"), "--out",
                 str(root / "run"), "--steps", "2", "--width", "4", "--blocks", "1", "--disc-width", "4",
                 "--disc-layers", "1", "--patch", "16", "--batch", "2", "--device", "cpu", "--quiet"]) == 0
    return root / "run"


def test_cyclegan_packages_of_both_directions(cyclegan_run, tmp_path, capsys):
    from tests.core.safety_common import hashes

    before = hashes(cyclegan_run)
    outputs = {}
    for direction, words in (("a2b", "A to B"), ("b2a", "B to A")):
        out = tmp_path / f"{direction}.zip"
        code, stdout, err = run_cli(capsys, "export", "--model", cyclegan_run, "--output", out, "--direction",
                                    direction, *AUTHORS, "--no-check")
        assert code == 0, err
        zoo_test(out)
        check_matches_predict_plain(capsys, tmp_path, out, "--direction", direction)
        descr = rdf(out)
        assert descr.name == f"napari-gan CycleGAN {words}"
        assert "10.1109/ICCV.2017.244" in [str(c.doi) for c in descr.cite]
        arch = descr.weights.pytorch_state_dict.architecture
        assert arch.callable == "NapariGanResNet" and arch.kwargs["blocks"] == 1
        assert arch.kwargs["per_image"]["percentiles"] == [0.5, 99.8]          # CycleGAN's default
        assert [p.id for p in descr.inputs[0].preprocessing] == ["ensure_dtype"]
        assert descr.config.model_extra["napari_gan"]["options"] == {"direction": direction}
        with zipfile.ZipFile(out) as zf:
            assert "napari_gan_resnet.py" in zf.namelist()
            readme = zf.read("README.md").decode()
        assert f"--direction {direction}" in readme and "inside the network" in readme
        outputs[direction] = read_npy(out, "test_output.npy")
    assert not np.allclose(outputs["a2b"], outputs["b2a"])                  # two generators
    assert hashes(cyclegan_run) == before                                    # the run is never written

    (tmp_path / "taken.zip").write_bytes(b"not a package")
    code, _, err = run_cli(capsys, "export", "--model", cyclegan_run, "--output", tmp_path / "taken.zip", *AUTHORS)
    assert_clean_error(code, err, "was not written by napari-gan")
    assert (tmp_path / "taken.zip").read_bytes() == b"not a package"
    code, _, err = run_cli(capsys, "export", "--model", cyclegan_run, "--output", tmp_path / "x.zip", *AUTHORS,
                           "--direction", "c2d")
    assert_clean_error(code, err, "must be one of a2b, b2a, not 'c2d'")
    assert not (tmp_path / "x.zip").exists()


def test_cyclegan_unet_package_with_domain_normalisation(tmp_path, capsys):
    """A uNet CycleGAN normalised per domain (random weights, saved directly): the b2a
    generator's package scales its input with B's range and passes bioimage.io's test."""
    from napari_gan.core import checkpoint
    from napari_gan.core.export import check_package, export_bioimageio
    from napari_gan.core.families.cyclegan import ARCHITECTURE, CycleGANConfig, build_generator

    cfg = CycleGANConfig(generator="unet", depth=2, width=4, patch=16, disc_layers=1, normalize="dataset")
    torch.manual_seed(0)
    arch = {k: getattr(cfg, k) for k in ARCHITECTURE}
    # A's range far above 0: bioimage.io needs a test output whose maximum is positive (its
    # absolute tolerance is at most 1% of it), and random weights give outputs of either sign
    norm = {"a": {"low": [1000.0], "high": [1190.0], "percentiles": [0.5, 99.8]},
            "b": {"low": [0.0], "high": [90.0], "percentiles": [0.5, 99.8]}}
    model = checkpoint.save_model(tmp_path / "cg.safetensors", "cyclegan", arch,
                                  {"generator_a2b": build_generator(cfg), "generator_b2a": build_generator(cfg)},
                                  norm, step=0, training={})
    out = export_bioimageio(model, tmp_path / "cg.zip", "CycleGAN uNet test", "A test.", "Ada Lovelace",
                            options={"direction": "b2a"})
    passed, summary = check_package(out)
    assert passed, summary
    descr = rdf(out)
    assert descr.weights.pytorch_state_dict.architecture.callable == "NapariGanUNet"
    assert [p.id for p in descr.inputs[0].preprocessing] == ["ensure_dtype", "scale_linear", "ensure_dtype"]
    assert descr.inputs[0].preprocessing[1].kwargs.gain[0] == pytest.approx(1 / 90.0)       # B's range
    assert descr.outputs[0].postprocessing[0].kwargs.gain[0] == pytest.approx(190.0)       # A's range
    check_matches_predict_plain(capsys, tmp_path, out, "--direction", "b2a")


def test_export_dispatches_through_the_family_registry(cyclegan_run, runs, tmp_path, capsys, monkeypatch):
    """Each family names its exporter; a family without one is refused, naming those that
    have one; an option of another family is refused for Pix2Pix."""
    from napari_gan.core import families

    assert all(f.bioimageio_exporter() is not None for f in families.all_families())
    monkeypatch.setattr(type(families.get("cyclegan")), "bioimageio_exporter", lambda self: None)
    code, _, err = run_cli(capsys, "export", "--model", cyclegan_run, "--output", tmp_path / "a.zip", *AUTHORS)
    assert_clean_error(code, err, "napari-gan exports Pix2Pix and StyleGAN2 models")
    code, _, err = run_cli(capsys, "export", "--model", runs["denoise"], "--output", tmp_path / "a.zip", *AUTHORS,
                           "--direction", "b2a")
    assert_clean_error(code, err, "--direction applies to CycleGAN models")
    assert not (tmp_path / "a.zip").exists()


def test_family_modules_import_no_export_code():
    code = ("import sys\n"
            "from napari_gan.core import families\n"
            "families.all_families()\n"
            "print(sorted(m for m in sys.modules if m.startswith(('bioimageio', 'napari_gan.core.export'))))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


# -------------------------------------------------------------- the network file
@pytest.mark.parametrize("kw", [
    dict(in_channels=1, out_channels=1, depth=2, width=4, scale=1, norm="none", residual=True),
    dict(in_channels=2, out_channels=2, depth=3, width=4, scale=2, norm="group", residual=True),
    dict(in_channels=1, out_channels=2, depth=1, width=4, scale=4, norm="none", residual=False),
])
def test_standalone_unet_equals_napari_gans(kw):
    from napari_gan.core.bioimageio_unet import NapariGanUNet
    from napari_gan.core.models.unet import UNetGenerator

    torch.manual_seed(0)
    ours, standalone = UNetGenerator(**kw).eval(), NapariGanUNet(**kw).eval()
    standalone.load_state_dict(ours.state_dict(), strict=True)   # the same parameter names
    scripted = torch.jit.script(standalone)
    for shape in ((1, 32, 40), (2, 37, 29), (1, 5, 9)):
        x = torch.randn(shape[0], kw["in_channels"], *shape[1:])
        with torch.no_grad():
            ref = ours(x)
            assert torch.equal(standalone(x), ref) and torch.equal(scripted(x), ref)


@pytest.mark.parametrize("kw", [
    dict(in_channels=1, out_channels=1, width=4, blocks=2, norm="none", residual=False),
    dict(in_channels=2, out_channels=2, width=4, blocks=1, norm="instance", residual=True),
    dict(in_channels=1, out_channels=2, width=3, blocks=0, norm="none", residual=True),
])
def test_standalone_resnet_equals_napari_gans(kw):
    from napari_gan.core.bioimageio_resnet import NapariGanResNet
    from napari_gan.core.models.resnet import ResNetGenerator

    torch.manual_seed(0)
    ours, standalone = ResNetGenerator(**kw).eval(), NapariGanResNet(**kw).eval()
    standalone.load_state_dict(ours.state_dict(), strict=True)   # the same parameter names
    scripted = torch.jit.script(standalone)
    for shape in ((1, 32, 40), (2, 37, 29), (1, 5, 9), (1, 3, 3)):
        x = torch.randn(shape[0], kw["in_channels"], *shape[1:])
        with torch.no_grad():
            ref = ours(x)
            assert torch.equal(standalone(x), ref) and torch.equal(scripted(x), ref)


def test_standalone_files_share_the_per_image_normalisation():
    """Each standalone file must be one file, so the per-image code is copied: kept identical."""
    import inspect

    from napari_gan.core import bioimageio_resnet, bioimageio_unet

    assert inspect.getsource(bioimageio_resnet._percentile) == inspect.getsource(bioimageio_unet._percentile)
    assert (inspect.getsource(bioimageio_resnet.NapariGanResNet._normalize_image)
            == inspect.getsource(bioimageio_unet.NapariGanUNet._normalize_image))
    assert bioimageio_resnet.MAX_STAT_BLOCKS == bioimageio_unet.MAX_STAT_BLOCKS


def test_standalone_files_need_only_torch():
    import ast

    from napari_gan.core import bioimageio_resnet, bioimageio_unet
    from napari_gan.core.models import stylegan2

    for module in (bioimageio_unet, bioimageio_resnet, stylegan2):
        tree = ast.parse(open(module.__file__).read())
        imported = {(n.module or "").split(".")[0] if isinstance(n, ast.ImportFrom) else a.name.split(".")[0]
                    for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                    for a in (n.names if isinstance(n, ast.Import) else [n])}
        assert imported <= {"torch", "math", "typing", "__future__"}, (module.__name__, imported)
        assert not any(isinstance(n, ast.ImportFrom) and n.level for n in ast.walk(tree))


def test_per_image_normalisation_inside_the_network():
    from napari_gan.core.bioimageio_unet import NapariGanUNet
    from napari_gan.core.normalization import Normalizer

    norm = Normalizer([0.0, 5.0], [1.0, 9.0], (0.5, 99.8), per_image=True)
    plane = np.random.default_rng(0).gamma(2, 100, (2, 64, 72)).astype(np.float32)
    plane[1] = 7.0                                           # constant: the stored range is kept
    net = NapariGanUNet(2, 2, 1, 4, per_image={"low": norm.low, "high": norm.high,
                                               "percentiles": list(norm.percentiles), "block": 4})
    expected = norm.for_plane(plane).normalize_tensor(torch.from_numpy(plane))
    for model in (net, torch.jit.script(net)):
        got = model._normalize_image(torch.from_numpy(np.stack([plane, plane])))
        assert torch.equal(got[0], expected) and torch.equal(got[1], expected)


def test_per_image_model_exports_with_normalisation_in_the_network(tmp_path, capsys):
    from napari_gan.core import checkpoint
    from napari_gan.core.families.pix2pix import Pix2PixConfig, build_generator
    from napari_gan.core.export import check_package, export_bioimageio

    cfg = Pix2PixConfig(depth=1, width=4, patch=16, disc_layers=1)
    torch.manual_seed(0)
    arch = {k: getattr(cfg, k) for k in ("task", "scale", "in_channels", "out_channels", "depth", "width",
                                          "norm", "residual")}
    norm = {"input": {"low": [10.0], "high": [200.0], "percentiles": [0.5, 99.8], "per_image": True},
            "target": {"low": [0.0], "high": [220.0], "percentiles": [0.5, 99.8]}}
    model = checkpoint.save_model(tmp_path / "pi.safetensors", "pix2pix", arch,
                                  {"generator": build_generator(cfg)}, norm, step=0, training={})
    out = export_bioimageio(model, tmp_path / "pi.zip", "Per image test", "A test.", "Ada Lovelace")
    passed, summary = check_package(out)
    assert passed, summary
    descr = rdf(out)
    assert [p.id for p in descr.inputs[0].preprocessing] == ["ensure_dtype"]
    assert descr.weights.pytorch_state_dict.architecture.kwargs["per_image"]["percentiles"] == [0.5, 99.8]
    with zipfile.ZipFile(out) as zf:
        assert "inside the network" in zf.read("README.md").decode()
    check_matches_predict_plain(capsys, tmp_path, out)


def check_matches_predict_plain(capsys, tmp_path, package, *extra):
    x, y = read_npy(package, "test_input.npy"), read_npy(package, "test_output.npy")
    pred = napari_gan_predict(capsys, tmp_path, package, x, *extra)
    # at least a few float32 steps at the output's magnitude (random weights: a nearly flat output)
    tolerance = max(TOLERANCE * float(np.ptp(y)), 4 * float(np.spacing(np.abs(y).max())))
    assert np.abs(pred - y[0]).max() <= tolerance
    for wf, (plain, _) in package_outputs(package).items():
        assert np.abs(plain[0] - pred).max() <= tolerance, wf


# ------------------------------------------------------------------- bad input
def test_bad_input_gives_one_clear_error(runs, tmp_path, capsys):
    model = runs["denoise"]
    ok = ["--model", model, "--output", tmp_path / "ok.zip", *AUTHORS, "--no-check"]

    def export(*args):
        return run_cli(capsys, "export", *args)

    code, _, err = export("--model", model / "training_state.safetensors", "--output", tmp_path / "a.zip", *AUTHORS)
    assert_clean_error(code, err, "training_state file, not a model")
    tifffile.imwrite(tmp_path / "image.tif", np.zeros((8, 8), np.float32))
    code, _, err = export("--model", tmp_path / "image.tif", "--output", tmp_path / "a.zip", *AUTHORS)
    assert_clean_error(code, err, "not a readable napari-gan model")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as zf:
        zf.writestr("rdf.yaml", "type: model")
    code, _, err = export("--model", tmp_path / "other.zip", "--output", tmp_path / "a.zip", *AUTHORS)
    assert_clean_error(code, err, "not a model package exported by napari-gan")
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 broken")
    code, _, err = export("--model", tmp_path / "broken.zip", "--output", tmp_path / "a.zip", *AUTHORS)
    assert_clean_error(code, err, "not a readable zip file")

    (tmp_path / "afile").write_text("x")
    code, _, err = export(*ok[:2], "--output", tmp_path / "afile" / "sub" / "out.zip", *ok[4:])
    assert_clean_error(code, err, "Cannot create folder")
    code, _, err = export(*ok[:2], "--output", model / "model.safetensors", *ok[4:])
    assert_clean_error(code, err, "would replace the model file")
    code, _, err = export(*ok[:2], "--output", tmp_path / "image.tif", "--test-input", tmp_path / "image.tif",
                          *ok[4:])
    assert_clean_error(code, err, "would replace the test input")
    code, _, err = export(*ok[:2], "--output", tmp_path / "out.tif", *ok[4:])
    assert_clean_error(code, err, "ending in .zip")
    (tmp_path / "notmine.zip").write_bytes(b"something else")
    code, _, err = export(*ok[:2], "--output", tmp_path / "notmine.zip", *ok[4:])
    assert_clean_error(code, err, "was not written by napari-gan")

    code, _, err = export(*ok, "--license", "Not-A-Licence")
    assert_clean_error(code, err, "SPDX")
    code, _, err = export(*ok, "--name", "x/y")
    assert_clean_error(code, err, "model name")
    code, _, err = export(*ok, "--cite", "my thesis")
    assert_clean_error(code, err, "neither a DOI")
    code, _, err = export(*ok, "--test-input", tmp_path / "image.tif")
    assert_clean_error(code, err, "needs at least")
    code, _, err = export("--model", model, "--output", tmp_path / "a.zip", "--authors", " ; ")
    assert_clean_error(code, err, "at least one author")
    assert not (tmp_path / "ok.zip").exists() and not (tmp_path / "a.zip").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "broken.zip", "image.tif", "notmine.zip",
                                                          "other.zip"]   # nothing half-written


def test_missing_bioimageio_packages_are_named(runs, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "bioimageio.core", None)
    code, _, err = run_cli(capsys, "export", "--model", runs["denoise"], "--output", tmp_path / "a.zip", *AUTHORS)
    assert_clean_error(code, err, "pip install 'napari-gan[bioimageio]'")


def test_napari_gan_never_imports_bioimageio_outside_export(runs, tmp_path):
    """Importing napari_gan, building the command line and predicting from a package (which
    needs only the standard library's zipfile) load no bioimage.io module."""
    from napari_gan.core.export import export_bioimageio

    # a cited web address is checked for its form only: exporting never touches the network
    package = export_bioimageio(runs["denoise"], tmp_path / "p.zip", "Import test", "A test.", "Ada Lovelace",
                                cite=["https://example.org/paper"])
    tifffile.imwrite(tmp_path / "x.tif", smooth_image((40, 40)))
    code = ("import sys, napari_gan, napari_gan.core.export\n"
            "from napari_gan.cli import build_parser, main\n"
            "build_parser()\n"
            f"assert main(['predict', '--model', {str(package)!r}, '--input', {str(tmp_path / 'x.tif')!r}, "
            f"'--output', {str(tmp_path / 'y.tif')!r}]) == 0\n"
            "print(sorted(m for m in sys.modules if m.startswith(('bioimageio', 'xarray'))))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert tifffile.imread(tmp_path / "y.tif").shape == (40, 40)
