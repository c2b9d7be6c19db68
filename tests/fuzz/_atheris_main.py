"""The atheris entry point the fuzz targets share: pyrnn imported under instrumentation, one
thread (reproducible), then test_one_input(data, pyrnn) on every generated input."""
import sys


def run(test_one_input):
    import atheris
    with atheris.instrument_imports(include=["pyrnn"]):
        import pyrnn
    pyrnn.set_num_threads(1)
    atheris.Setup(sys.argv, lambda data: test_one_input(data, pyrnn))
    atheris.Fuzz()
