"""Python code to prepend to a ``python -c`` child so it cannot import torch, torchaudio or
onnxruntime: the commands that must run in a light CI job (report, gate, cache) are run so."""

BLOCK_TORCH = (
    "import sys, importlib.abc\n"
    "class Block(importlib.abc.MetaPathFinder):\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] in ('torch', 'torchaudio', 'onnxruntime'):\n"
    "            raise ImportError('blocked: ' + name)\n"
    "sys.meta_path.insert(0, Block())\n"
)
