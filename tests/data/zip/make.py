"""Makes the zip fixtures of tests/test_zip.cpp with the real writers.

Run from anywhere, once with Debian's torch 1.13 and once with a torch 2.x (>= 2.5; the venv
scripts/deps.sh makes, $PTHIO_VENV, by default ~/.cache/pthio/venv-torch2):
    /usr/bin/python3 tests/data/zip/make.py
    $PTHIO_VENV/bin/python tests/data/zip/make.py
Each run writes the files of its torch's major version, and both write the zipfile ones.
"""
import io
import os
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))


def path(name):
    return os.path.join(HERE, name)


def state():
    import torch
    return {
        'w': torch.arange(6, dtype=torch.float32).reshape(2, 3),
        'empty': torch.zeros(0),
        'i': torch.arange(5, dtype=torch.int64),
        'h': torch.tensor(1.5, dtype=torch.float16),
    }


def torch_files():
    import torch
    major = int(torch.__version__.split('.')[0])
    if major == 1:
        # Saved to a path: the archive folder is the file's stem ("torch113_state/").
        torch.save(state(), path('torch113_state.pth'))
        # Saved to a buffer: the folder is "archive/".
        buf = io.BytesIO()
        torch.save({'x': torch.ones(3)}, buf)
        with open(path('torch113_buffer.pth'), 'wb') as f:
            f.write(buf.getvalue())
        # Many records: 40 storages, keys 0..39 (lexicographic order in the zip).
        torch.save([torch.full((i,), float(i)) for i in range(40)], path('torch113_many.pth'))

        # TorchScript: miniz deflates the code/ records (method 8, version needed 20).
        class M(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.l = torch.nn.Linear(2, 2)

            def forward(self, x):
                return self.l(x)

        torch.manual_seed(0)
        torch.jit.save(torch.jit.trace(M(), torch.zeros(1, 2)), path('torch113_script.pt'))
    else:
        # Adds .format_version, .storage_alignment, byteorder, .data/serialization_id (2.x).
        torch.save(state(), path('torch2_state.pth'))
        # CRC-32 switched off: every CRC field is 0.
        torch.serialization.set_crc32_options(False)
        torch.save(state(), path('torch2_nocrc.pth'))
        torch.serialization.set_crc32_options(True)


def zipfile_files():
    # Python's zipfile: deflated and stored entries, an entry comment, an archive comment.
    with zipfile.ZipFile(path('zipfile_deflated.zip'), 'w') as z:
        z.comment = b'an archive comment'
        info = zipfile.ZipInfo('archive/data.txt', date_time=(2020, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        info.comment = b'an entry comment'
        z.writestr(info, b'hello deflate ' * 200)
        info = zipfile.ZipInfo('archive/stored.bin', date_time=(2020, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_STORED
        z.writestr(info, bytes(range(256)))
        info = zipfile.ZipInfo('archive/empty', date_time=(2020, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        z.writestr(info, b'')
    # An archive with no entries: the 22-byte end record alone.
    with zipfile.ZipFile(path('zipfile_empty.zip'), 'w'):
        pass


try:
    torch_files()
except ImportError:
    pass
zipfile_files()
