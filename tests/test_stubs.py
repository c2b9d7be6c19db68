"""The .pyi stubs of the compiled extensions (pyrnn/_core.pyi, _train.pyi, _cuda.pyi) name every
public function, class and method the runtime modules have, with the same parameter names: a
stub that lags the code misleads type checkers and IDEs (DESIGN.md, style)."""
import ast
import importlib
import inspect
import pathlib

import pytest

import pyrnn

STUB_DIR = pathlib.Path(pyrnn.__file__).parent


def stub_tree(module):
    return ast.parse((STUB_DIR / f"{module}.pyi").read_text())


def stub_params(fn):
    a = fn.args
    names = [x.arg for x in a.posonlyargs + a.args]
    if a.vararg:
        names.append("*" + a.vararg.arg)
    names += [x.arg for x in a.kwonlyargs]
    if a.kwarg:
        names.append("**" + a.kwarg.arg)
    return names


def runtime_params(obj):
    out = []
    for p in inspect.signature(obj).parameters.values():
        prefix = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "")
        out.append(prefix + p.name)
    return out


def stub_entries(module):
    """{name: params} for functions and {class: {method: params}} from a stub."""
    funcs, classes = {}, {}
    for node in stub_tree(module).body:
        if isinstance(node, ast.FunctionDef):
            funcs[node.name] = stub_params(node)
        elif isinstance(node, ast.ClassDef):
            methods = classes[node.name] = {}
            for n in node.body:
                if not isinstance(n, ast.FunctionDef):
                    continue
                decorators = [ast.unparse(d) for d in n.decorator_list]
                if n.name in methods and "overload" in decorators:
                    continue  # an @overload's first form is the one set against the runtime
                methods[n.name] = (stub_params(n), decorators)
    return funcs, classes


def load(module):
    if module == "_cuda":
        import pyrnn.cuda
        if pyrnn.cuda._load() is None:
            pytest.skip("pyrnn._cuda is not built")
    return importlib.import_module(f"pyrnn.{module}")


@pytest.mark.parametrize("module", ["_core", "_train", "_cuda"])
def test_stub_names_every_public_callable(module):
    mod = load(module)
    funcs, classes = stub_entries(module)
    public = {n for n in dir(mod) if not n.startswith("_")}
    runtime_funcs = {n for n in public if callable(getattr(mod, n)) and not inspect.isclass(getattr(mod, n))}
    runtime_classes = {n for n in public if inspect.isclass(getattr(mod, n))}
    assert sorted(runtime_funcs - set(funcs)) == [], "functions missing from the stub"
    assert sorted(set(n for n in funcs if not n.startswith("_")) - runtime_funcs) == [], \
        "stub functions the module lacks"
    assert sorted(runtime_classes - set(classes)) == [], "classes missing from the stub"
    for cls, methods in classes.items():
        rt = getattr(mod, cls)
        rt_methods = {n for n, v in vars(rt).items()
                      if (not n.startswith("_") or n in ("__init__", "__array__", "__dlpack__",
                                                         "__dlpack_device__", "__len__"))
                      and callable(v) and not isinstance(v, property)}
        assert sorted(rt_methods - set(methods) - {"__init__"}) == [], f"{cls} methods missing"
        for name, (params, _) in methods.items():
            assert hasattr(rt, name), f"stub names {cls}.{name}, which the class lacks"


@pytest.mark.parametrize("module", ["_core", "_train", "_cuda"])
def test_stub_parameter_names_match(module):
    mod = load(module)
    funcs, classes = stub_entries(module)
    checked = 0
    for name, params in funcs.items():
        if hasattr(mod, name):
            assert runtime_params(getattr(mod, name)) == params, name
            checked += 1
    for cls, methods in classes.items():
        rt = getattr(mod, cls)
        for name, (params, decorators) in methods.items():
            attr = inspect.getattr_static(rt, name)
            if "property" in decorators or isinstance(attr, property) or name == "__init__":
                continue  # descriptors; Cython's __init__ has no introspectable signature
            fn = getattr(rt, name)
            try:
                got = runtime_params(fn)
            except (TypeError, ValueError):
                continue  # a C slot wrapper (e.g. __len__)
            want = params if "staticmethod" in decorators else params
            if got and got[0] == "self" and (not want or want[0] != "self"):
                got = got[1:]
            assert got == want, f"{cls}.{name}"
            checked += 1
    assert checked > 5
