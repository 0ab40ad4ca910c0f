"""Container images for the real lab, built here without Docker or a registry.

Each image is an OCI image layout assembled with umoci (`umoci new` + `umoci insert` + `umoci config`)
and packed as a tar that `ctr images import` takes; it lands in the shared cache
(`<cache>/images/<name>-<recipe hash>.tar`) and is built once per recipe. Images:

* `pause`: the pod sandbox's PID 1, a small static C program (lab/images/pause.c) built with gcc;
* `busybox`: Debian's static busybox with its applets linked, for test pods;
* `coredns`: the CoreDNS binary the lab builds from its Go module (lab.tools.COREDNS);
* `argoexec`, `workflow-controller`: Argo's executor and controller of one Argo line, the static
  binaries the lab builds from the Argo module (lab.tools.ARGO_LINES), as Argo's own images hold them;
* `debian`: a minimal Debian root file system made with mmdebstrap at a pinned suite and snapshot
  date of the package lists it saw (the base the step and lab images build on);
* `faultflow-steps`, `faultflow-shim`, `faultflow-node-agent`: the product's images, as images/*/Dockerfile
  say (lab.images.product);
* `faultflow-cuda-worker`, `faultflow-lab-worker`, `faultflow-frontend-simulator`: the lab's workload
  over the driver simulator, and the frontend simulator (lab.images.worker).

An image may add one layer to another (`Image.base`): nodes store the shared layers once.
`python -m lab.images.build [NAME…]` builds the named images (all without names) into the cache.

Names: every image is `localhost/<name>:<tag>`; nothing is ever pulled (`imagePullPolicy: Never`).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from lab import cache, tools

HERE = Path(__file__).parent
DEBIAN_SUITE = "bookworm"  # the machine's own release: its apt mirror serves it
# The Debian base's packages beyond `minbase`, at pinned versions (the suite's current ones); apt
# fails the build when the mirror no longer serves a pin, rather than silently taking another.
DEBIAN_PACKAGES = ("python3=3.11.2-1+b1", "ca-certificates=20250419~deb12u2")
# Where the machine's apt finds its mirror: the base is fetched from the same place.
APT_SOURCES = ("/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list")


@dataclass(frozen=True)
class Image:
    name: str
    tag: str
    # What goes in, for the cache key: file contents are hashed, strings taken as they are.
    inputs: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    user: str = ""
    env: tuple[str, ...] = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)
    # An image this one adds a layer to (its layers are shared: a node stores them once).
    base: Image | None = None

    @property
    def ref(self) -> str:
        return f"localhost/{self.name}:{self.tag}"

    def key(self) -> str:
        digest = hashlib.sha256()
        for item in (self.name, self.tag, *self.entrypoint, self.user, *self.env, *self.inputs):
            path = Path(item)
            digest.update(path.read_bytes() if item.startswith("/") and path.is_file() else item.encode())
        if self.base is not None:
            digest.update(self.base.key().encode())
        return digest.hexdigest()[:16]

    @property
    def tar(self) -> Path:
        return cache.cache_root() / "images" / f"{self.name}-{self.key()}.tar"


PAUSE = Image("pause", "3.10", inputs=(str(HERE / "pause.c"),), entrypoint=("/pause",))
BUSYBOX = Image("busybox", "1.35", inputs=("/bin/busybox",), entrypoint=("/bin/sh",))


def coredns() -> Image:
    binary = tools.ensure_built(tools.COREDNS)
    return Image("coredns", tools.COREDNS.version.lstrip("v"), inputs=(str(binary),), entrypoint=("/coredns",))


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd[:3])}…` failed (rc={proc.returncode}): {(proc.stderr or proc.stdout).strip()[-500:]}")
    return proc


def assemble(image: Image, rootfs: Path) -> Path:
    """`rootfs` (a directory) as one layer — alone, or over `image.base`'s layers — as an importable
    OCI tar, in the cache."""
    out = image.tar
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"faultflow-image-{image.name}-", dir=out.parent) as scratch:
        layout = Path(scratch) / "layout"
        if image.base is None:
            source = f"{layout}:{image.tag}"
            _run(["umoci", "init", "--layout", str(layout)])
            _run(["umoci", "new", "--image", source])
        else:
            layout.mkdir()
            _run(["tar", "-C", str(layout), "-xf", str(image.base.tar)])
            source = f"{layout}:{image.base.tag}"
        _run(["umoci", "insert", "--image", source, str(rootfs), "/"])
        target = f"{layout}:{image.tag}"
        # --tag: the configured image under its own tag; the base's tag (if any) is removed below,
        # so the layout holds exactly one image for `ctr images import`.
        config = ["umoci", "config", "--image", source, "--tag", image.tag, "--config.entrypoint", image.entrypoint[0]]
        for arg in image.entrypoint[1:]:
            config += ["--config.entrypoint", arg]
        for env in image.env:
            config += ["--config.env", env]
        if image.user:
            config += ["--config.user", image.user]
        _run(config)
        if source != target:
            _run(["umoci", "rm", "--image", source])
        _run(["umoci", "gc", "--layout", str(layout)])
        partial = out.with_suffix(".partial")
        _run(["tar", "-C", str(layout), "-cf", str(partial), "."])
        partial.replace(out)
    return out


def sizes(image: Image) -> tuple[int, int]:
    """(compressed, uncompressed) bytes of the image's layers, base layers included (a figure: what a
    node stores and unpacks for it, sharing nothing)."""
    import json
    import tarfile
    import zlib

    compressed = uncompressed = 0
    with tarfile.open(image.tar) as outer:

        def blob(digest: str):
            return outer.extractfile(f"./blobs/sha256/{digest.split(':', 1)[1]}")

        index = json.load(outer.extractfile("./index.json"))  # type: ignore[arg-type]
        manifest = json.load(blob(index["manifests"][0]["digest"]))  # type: ignore[arg-type]
        for layer in manifest["layers"]:
            compressed += layer["size"]
            stream, gunzip = blob(layer["digest"]), zlib.decompressobj(31)  # gzip layers (umoci's)
            while chunk := stream.read(1 << 20):  # type: ignore[union-attr]
                uncompressed += len(gunzip.decompress(chunk))
    return compressed, uncompressed


def ensure(image: Image, populate) -> Path:
    """The image's tar, built by `populate(rootfs)` + `assemble` when the cache lacks it."""
    if image.tar.is_file():
        return image.tar
    with cache.exclusive(f"image-{image.name}"):
        if image.tar.is_file():
            return image.tar
        start = time.monotonic()
        print(f"faultflow: building image {image.ref}", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix=f"faultflow-rootfs-{image.name}-") as scratch:
            rootfs = Path(scratch) / "rootfs"
            rootfs.mkdir()
            populate(rootfs)
            assemble(image, rootfs)
        print(f"faultflow: built image {image.ref} in {time.monotonic() - start:.1f}s", file=sys.stderr, flush=True)
    return image.tar


def _pause(rootfs: Path) -> None:
    _run(["gcc", "-static", "-Os", "-s", "-o", str(rootfs / "pause"), str(HERE / "pause.c")])


def _busybox(rootfs: Path) -> None:
    (rootfs / "bin").mkdir()
    shutil.copy2("/bin/busybox", rootfs / "bin" / "busybox")
    applets = _run(["/bin/busybox", "--list"]).stdout.split()
    for applet in applets:
        link = rootfs / "bin" / applet
        if not link.exists():
            link.symlink_to("busybox")
    for folder in ("tmp", "proc", "sys", "dev", "etc"):
        (rootfs / folder).mkdir(exist_ok=True)
    (rootfs / "tmp").chmod(0o1777)


def _coredns_populate(binary: Path):
    def populate(rootfs: Path) -> None:
        shutil.copy2(binary, rootfs / "coredns")
        (rootfs / "etc").mkdir()

    return populate


DEBIAN = Image("debian", f"{DEBIAN_SUITE}-py311", inputs=(DEBIAN_SUITE, *DEBIAN_PACKAGES), entrypoint=("/bin/sh",))


def _debian(rootfs: Path) -> None:
    """mmdebstrap's minbase of the pinned suite plus the pinned packages; its dpkg manifest is kept
    at /usr/share/faultflow/packages.txt (what exactly the image holds)."""
    sources = next((path for path in APT_SOURCES if Path(path).is_file()), None)
    if sources is None:
        raise RuntimeError(f"faultflow: no apt sources ({' or '.join(APT_SOURCES)}) to build the Debian base from")
    _run(
        [
            "mmdebstrap",
            "--quiet",
            "--variant=minbase",
            "--include=" + ",".join(DEBIAN_PACKAGES),
            "--dpkgopt=path-exclude=/usr/share/{doc,man,locale}/*",
            '--aptopt=Apt::Install-Recommends "false"',
            DEBIAN_SUITE,
            str(rootfs),
            sources,
        ],
        stdin=subprocess.DEVNULL,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "SOURCE_DATE_EPOCH": "1700000000"},
    )
    manifest = _run(["dpkg-query", f"--admindir={rootfs}/var/lib/dpkg", "-W", "-f", "${Package}=${Version}\\n"]).stdout
    (rootfs / "usr/share/faultflow").mkdir(parents=True, exist_ok=True)
    (rootfs / "usr/share/faultflow/packages.txt").write_text(manifest)


def ensure_debian() -> Image:
    ensure(DEBIAN, _debian)
    return DEBIAN


def ensure_pause() -> Image:
    ensure(PAUSE, _pause)
    return PAUSE


def ensure_busybox() -> Image:
    ensure(BUSYBOX, _busybox)
    return BUSYBOX


def ensure_coredns() -> Image:
    image = coredns()
    ensure(image, _coredns_populate(tools.COREDNS.binary))
    return image


# ---- Argo (lab.argo) ----------------------------------------------------------------------------
# Argo's release images hold the static binary at /bin/<name>, run as user 8737 (the controller's
# Deployment demands runAsNonRoot), with the binary as entrypoint; the controller's pod spec calls
# `argoexec` by name, so /bin is on PATH. /tmp is there for Go's temporary files.
ARGO_USER = "8737"


def argo_image(tool: tools.GoTool) -> Image:
    return Image(tool.name, tool.version, inputs=(str(tool.binary),), entrypoint=(f"/bin/{tool.name}",), user=ARGO_USER)


def _argo_populate(binary: Path):
    def populate(rootfs: Path) -> None:
        (rootfs / "bin").mkdir()
        shutil.copy2(binary, rootfs / "bin" / binary.name)
        for folder in ("tmp", "etc"):
            (rootfs / folder).mkdir()
        (rootfs / "tmp").chmod(0o1777)

    return populate


def ensure_argo(tool: tools.GoTool) -> Image:
    """The image of one Argo binary (argoexec or workflow-controller), building the binary first if needed."""
    binary = tools.ensure_built(tool)
    image = argo_image(tool)
    ensure(image, _argo_populate(binary))
    return image


def argo_builders() -> dict:
    """`python -m lab.images.build` names for the Argo images, e.g. `argoexec-v4.0`."""
    return {
        f"{tool.name}-{line}": (lambda tool=tool: ensure_argo(tool))
        for line, argo in tools.ARGO_LINES.items()
        for tool in (argo.executor, argo.controller)
    }


def import_into(image: Image, containerd_socket: str | Path, enter: tuple[str, ...] | list[str] = ()) -> None:
    """Load the image into one node's containerd (namespace k8s.io, the one the CRI plugin uses);
    `enter`: an argv prefix running ctr where the socket path means that containerd's."""
    _run(
        [
            *enter,
            "ctr",
            "--address",
            str(containerd_socket),
            "--namespace",
            "k8s.io",
            "images",
            "import",
            "--base-name",
            f"localhost/{image.name}",
            str(image.tar),
        ]
    )  # the layout's tag -> <base-name>:<tag>


def builders() -> dict:
    """Every image by name: the lab's own, the product's (images/steps, images/shim) and the worker."""
    from lab.images import product, worker  # they build on this module's bases

    return {
        "pause": ensure_pause,
        "busybox": ensure_busybox,
        "coredns": ensure_coredns,
        "debian": ensure_debian,
        "faultflow-shim": product.ensure_shim,
        "faultflow-steps": product.ensure_steps,
        "faultflow-node-agent": product.ensure_node_agent,
        "faultflow-cuda-worker": worker.ensure_cuda_worker,
        "faultflow-lab-worker": worker.ensure_lab_worker,
        "faultflow-frontend-simulator": worker.ensure_frontend,
        **argo_builders(),
    }


def main(argv: list[str] | None = None) -> int:
    names = argv if argv is not None else sys.argv[1:]
    known = builders()
    if unknown := [name for name in names if name not in known]:
        print(f"faultflow: no image named {', '.join(unknown)} (images: {' '.join(known)})", file=sys.stderr)
        return 2
    for name in names or known:
        image = known[name]()
        print(f"{image.ref}\t{image.tar}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
