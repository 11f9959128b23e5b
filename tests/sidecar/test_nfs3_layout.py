"""The ctypes structures of worker/adapters/nfs3.py match libnfs's C headers, byte for byte.

A wrong offset would send garbage to the server or read garbage from its replies, so every
size and offset we rely on is compared with what the C compiler says for libnfs-raw-nfs.h
and libnfs-raw-mount.h.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest

from worker.adapters import nfs3

HEADER = Path("/usr/include/nfsc/libnfs-raw-nfs.h")

# (expression the C compiler evaluates, the same quantity on our ctypes side)
CHECKS: list[tuple[str, int]] = [
    ("sizeof(nfs_fh3)", ctypes.sizeof(nfs3.Fh3)),
    ("offsetof(nfs_fh3, data.data_val)", nfs3.Fh3.val.offset),
    ("sizeof(fattr3)", ctypes.sizeof(nfs3.Fattr3)),
    ("offsetof(fattr3, size)", nfs3.Fattr3.size.offset),
    ("offsetof(fattr3, mtime)", nfs3.Fattr3.mtime.offset),
    ("offsetof(fattr3, ctime)", nfs3.Fattr3.ctime.offset),
    ("sizeof(post_op_attr)", ctypes.sizeof(nfs3.PostOpAttr)),
    ("offsetof(post_op_attr, post_op_attr_u.attributes)", nfs3.PostOpAttr.attributes.offset),
    ("sizeof(wcc_data)", ctypes.sizeof(nfs3.WccData)),
    ("offsetof(wcc_data, after)", nfs3.WccData.after.offset),
    ("sizeof(diropargs3)", ctypes.sizeof(nfs3.DirOpArgs3)),
    ("offsetof(diropargs3, name)", nfs3.DirOpArgs3.name.offset),
    ("offsetof(LOOKUP3res, LOOKUP3res_u.resok.object)", nfs3.LookupRes.object.offset),
    (
        "offsetof(LOOKUP3res, LOOKUP3res_u.resok.obj_attributes)",
        nfs3.LookupRes.obj_attributes.offset,
    ),
    (
        "offsetof(GETATTR3res, GETATTR3res_u.resok.obj_attributes)",
        nfs3.GetattrRes.attributes.offset,
    ),
    ("sizeof(sattr3)", ctypes.sizeof(nfs3.Sattr3)),
    ("offsetof(sattr3, mode.set_mode3_u.mode)", nfs3.Sattr3.mode.offset),
    ("offsetof(sattr3, size.set_size3_u.size)", nfs3.Sattr3.size.offset),
    ("offsetof(sattr3, mtime.set_mtime_u.mtime)", nfs3.Sattr3.mtime.offset),
    ("offsetof(CREATE3args, how.mode)", nfs3.CreateArgs.how.offset),
    ("offsetof(CREATE3args, how.createhow3_u.obj_attributes)", nfs3.CreateArgs.attributes.offset),
    ("offsetof(CREATE3res, CREATE3res_u.resok.obj)", nfs3.CreateRes.obj.offset),
    ("offsetof(post_op_fh3, post_op_fh3_u.handle)", nfs3.PostOpFh3.handle.offset),
    ("sizeof(WRITE3args)", ctypes.sizeof(nfs3.WriteArgs)),
    ("offsetof(WRITE3args, offset)", nfs3.WriteArgs.offset.offset),
    ("offsetof(WRITE3args, count)", nfs3.WriteArgs.count.offset),
    ("offsetof(WRITE3args, stable)", nfs3.WriteArgs.stable.offset),
    ("offsetof(WRITE3args, data.data_len)", nfs3.WriteArgs.data_len.offset),
    ("offsetof(WRITE3args, data.data_val)", nfs3.WriteArgs.data_val.offset),
    ("offsetof(WRITE3res, WRITE3res_u.resok.file_wcc)", nfs3.WriteRes.wcc.offset),
    ("offsetof(WRITE3res, WRITE3res_u.resok.count)", nfs3.WriteRes.count.offset),
    ("offsetof(WRITE3res, WRITE3res_u.resok.committed)", nfs3.WriteRes.committed.offset),
    ("offsetof(READLINK3res, READLINK3res_u.resok.data)", nfs3.ReadlinkRes.data.offset),
    ("sizeof(READLINK3args)", ctypes.sizeof(nfs3.Fh3)),
    ("offsetof(RENAME3args, to)", nfs3.RenameArgs.target.offset),
    ("sizeof(REMOVE3args)", ctypes.sizeof(nfs3.DirOpArgs3)),
    ("sizeof(GETATTR3args)", ctypes.sizeof(nfs3.Fh3)),
    ("sizeof(fhandle3)", ctypes.sizeof(nfs3.Fh3)),
    ("offsetof(mountres3, mountres3_u.mountinfo.fhandle)", nfs3.MountRes.handle.offset),
    ("sizeof(mountres3)", ctypes.sizeof(nfs3.MountRes)),
]


@pytest.fixture(scope="module")
def c_values(tmp_path_factory: pytest.TempPathFactory) -> list[int]:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None or not HEADER.exists():
        pytest.skip("needs a C compiler and libnfs-dev's headers")
    source = tmp_path_factory.mktemp("layout") / "layout.c"
    prints = "\n".join(f'    printf("%zu\\n", (size_t)({expr}));' for expr, _ in CHECKS)
    source.write_text(
        "#include <stddef.h>\n#include <stdio.h>\n#include <stdint.h>\n#include <sys/types.h>\n"
        "#include <nfsc/libnfs.h>\n#include <nfsc/libnfs-raw.h>\n#include <nfsc/libnfs-raw-nfs.h>\n"
        "#include <nfsc/libnfs-raw-mount.h>\n"
        f"int main(void) {{\n{prints}\n    return 0;\n}}\n"
    )
    binary = source.with_suffix("")
    subprocess.run([compiler, "-o", str(binary), str(source)], check=True, capture_output=True)
    output = subprocess.run([str(binary)], check=True, capture_output=True, text=True).stdout
    return [int(line) for line in output.split()]


@pytest.mark.parametrize("index", range(len(CHECKS)), ids=[expr for expr, _ in CHECKS])
def test_ctypes_layout_matches_the_c_header(c_values: list[int], index: int) -> None:
    expression, ours = CHECKS[index]
    assert ours == c_values[index], expression
