"""Output emitters: one module per format, each exposing render(report) -> str."""
