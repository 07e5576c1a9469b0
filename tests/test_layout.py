"""The package's shape: commands on top, no import cycle, the result format a leaf without torch."""
import ast
import os
import os.path as osp
import subprocess
import sys

from .conftest import REPO_ROOT

PACKAGE = osp.join(REPO_ROOT, 'ghostsr_plugin')


def module_imports():
    """``{module: {imported ghostsr_plugin modules}}``, every import in each file (lazy ones too)."""
    files = {}
    for folder, _, names in os.walk(PACKAGE):
        for name in names:
            if name.endswith('.py'):
                path = osp.join(folder, name)
                module = osp.relpath(path, REPO_ROOT)[:-3].replace(os.sep, '.').removesuffix('.__init__')
                files[module] = path
    imports = {}
    for module, path in files.items():
        package = module if path.endswith('__init__.py') else module.rsplit('.', 1)[0]
        found = set()
        for node in ast.walk(ast.parse(open(path, encoding='utf-8').read())):
            if isinstance(node, ast.ImportFrom):
                base = package.rsplit('.', node.level - 1)[0] if node.level > 1 else package
                target = (base + ('.' + node.module if node.module else '')) if node.level else node.module
                candidates = [target, *(f'{target}.{alias.name}' for alias in node.names)]
            elif isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            else:
                continue
            found |= {c for c in candidates if c in files and c != module}
        imports[module] = found
    return imports


def test_no_import_cycle():
    imports = module_imports()
    # A package importing its own submodules is how registration works; any other loop is a cycle.
    edges = {m: {n for n in targets if not n.startswith(m + '.')} for m, targets in imports.items()}
    state = {}

    def visit(module, path):
        state[module] = 'open'
        for target in edges[module]:
            assert state.get(target) != 'open', 'import cycle: ' + ' -> '.join([*path, target])
            if target not in state:
                visit(target, [*path, target])
        state[module] = 'done'

    for module in edges:
        if module not in state:
            visit(module, [module])


def test_library_modules_import_no_command_and_no_argparse():
    for module, targets in module_imports().items():
        if module.startswith('ghostsr_plugin.commands') or module == 'ghostsr_plugin.cli':
            continue
        assert not [t for t in targets if t.startswith('ghostsr_plugin.commands')], module
        source = open(osp.join(REPO_ROOT, *module.split('.')) + ('/__init__.py' if osp.isdir(
            osp.join(REPO_ROOT, *module.split('.'))) else '.py'), encoding='utf-8').read()
        assert 'import argparse' not in source, module


def test_the_result_format_imports_no_torch():
    code = 'import sys; import ghostsr_plugin.results; print("torch" in sys.modules)'
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr
    # importing the package imports torch (its __init__ registers the archs); the leaf itself does not:
    assert 'import torch' not in open(osp.join(PACKAGE, 'results.py'), encoding='utf-8').read()
    assert module_imports()['ghostsr_plugin.results'] == set()
