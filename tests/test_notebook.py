"""notebooks/fashion_mnist.ipynb runs from top to bottom (on a small subset of the real data)."""
import pathlib

import nbformat
from nbclient import NotebookClient

NOTEBOOK = pathlib.Path(__file__).resolve().parent.parent / "notebooks" / "fashion_mnist.ipynb"


def test_notebook_runs(fashion_mnist_dir, monkeypatch):
    monkeypatch.setenv("MINICNN_DATA", str(fashion_mnist_dir))
    monkeypatch.setenv("MINICNN_NOTEBOOK_TRAIN", "2000")
    monkeypatch.setenv("MINICNN_NOTEBOOK_TEST", "500")
    monkeypatch.setenv("MINICNN_NOTEBOOK_EPOCHS", "2")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    outputs = "".join(o.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                      for o in cell.get("outputs", []))
    assert "epoch 2: train loss" in outputs and "minicnn against torch: equal" in outputs
    assert "gradcheck passed" in outputs and "1568 inputs" in outputs
