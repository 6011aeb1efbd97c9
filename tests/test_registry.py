"""The backbone registry: built-ins, fake entry-point plugins, errors, caching."""

import importlib.metadata
import subprocess
import sys
import textwrap
import warnings

import pytest

from tlestimators.backbones import registry
from tlestimators.backbones.registry import (
    backbone_info,
    create_backbone,
    list_backbones,
    refresh_backbones,
    register_backbone,
)
from tlestimators.exceptions import (
    BackboneNameClashError,
    BackboneNotFoundError,
    PluginError,
    PluginLoadError,
    PluginWarning,
)

GROUP = registry.ENTRY_POINT_GROUP

PLUGIN_SOURCE = textwrap.dedent(
    '''
    from tlestimators.backbones._mlp import MLPBackbone

    def tiny_mlp(pretrained=True, weights=None, in_features=4, width=3):
        """A fake plugin backbone: a one-layer MLP."""
        return MLPBackbone(in_features, hidden_sizes=(width,))

    tiny_mlp.modality = "features"

    def family(suffix, pretrained=True, weights=None, in_features=4):
        """A fake plugin family whose suffix is the width."""
        return MLPBackbone(in_features, hidden_sizes=(int(suffix),))

    def not_a_backbone(pretrained=True, weights=None):
        return "I am a string"

    NOT_CALLABLE = 42
    '''
)


@pytest.fixture
def fake_plugins(tmp_path, monkeypatch):
    """Install fake plugin modules and let tests choose the entry points seen."""
    (tmp_path / "tle_fake_plugin.py").write_text(PLUGIN_SOURCE)
    (tmp_path / "tle_fake_plugin_b.py").write_text(PLUGIN_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    for mod in ("tle_fake_plugin", "tle_fake_plugin_b"):  # imported afresh by each test
        monkeypatch.delitem(sys.modules, mod, raising=False)
    eps: list = []
    calls = {"n": 0}

    def fake_entry_points():
        calls["n"] += 1
        return list(eps)

    monkeypatch.setattr(registry, "_entry_points", fake_entry_points)
    refresh_backbones()
    yield eps, calls
    refresh_backbones()


def ep(name, value):
    return importlib.metadata.EntryPoint(name=name, value=value, group=GROUP)


def test_builtins_are_listed():
    names = list_backbones()
    assert {"efficientnet_lite0", "timm/", "mlp"} <= set(names)
    assert names == sorted(names)


def test_list_backbones_pattern_is_fnmatch_case_insensitive():
    assert list_backbones("efficientnet*") == ["efficientnet_lite0"]
    assert list_backbones("TIMM*") == ["timm/"]
    assert list_backbones("no-such-*") == []


def test_fake_plugin_is_discovered_and_used(fake_plugins):
    eps, _ = fake_plugins
    eps += [ep("tiny_mlp", "tle_fake_plugin:tiny_mlp"), ep("fam/", "tle_fake_plugin:family")]
    assert {"tiny_mlp", "fam/"} <= set(list_backbones())
    bb = create_backbone("tiny_mlp", in_features=5)
    assert bb.config.in_features == 5 and bb.num_features == 3
    assert create_backbone("fam/7").num_features == 7
    info = backbone_info("tiny_mlp")
    assert info["source"].startswith("plugin ") and "tle_fake_plugin:tiny_mlp" in info["source"]
    assert info["description"] == "A fake plugin backbone: a one-layer MLP."
    assert registry.backbone_modality("tiny_mlp") == "features"


def test_a_plugin_module_is_imported_on_first_use_of_that_plugin_only(fake_plugins):
    eps, _ = fake_plugins
    eps += [ep("tiny_mlp", "tle_fake_plugin:tiny_mlp"), ep("other", "tle_fake_plugin_b:tiny_mlp")]
    assert {"tiny_mlp", "other"} <= set(list_backbones())  # names need no import
    assert "tle_fake_plugin" not in sys.modules and "tle_fake_plugin_b" not in sys.modules
    create_backbone("tiny_mlp")
    assert "tle_fake_plugin" in sys.modules and "tle_fake_plugin_b" not in sys.modules


def test_registry_module_never_imports_the_adapters():
    # The adapters register themselves (imported by the backbones package after the
    # registry); the registry importing them back was the _sentence -> features ->
    # estimators -> registry -> _sentence cycle. import-linter checks this too.
    import ast

    tree = ast.parse(open(registry.__file__).read())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {f"{n.module}.{a.name}" for n in ast.walk(tree)
                 if isinstance(n, ast.ImportFrom) for a in n.names}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    adapters = {m for m in imported if m and m.startswith("tlestimators.backbones._")}
    assert not adapters


def test_broken_plugin_warns_once_naming_it_and_the_others_keep_working(fake_plugins):
    eps, _ = fake_plugins
    eps += [
        ep("broken", "tle_no_such_module_xyz:factory"),
        ep("tiny_mlp", "tle_fake_plugin:tiny_mlp"),
    ]
    with warnings.catch_warnings():  # listing imports no plugin, so nothing can fail yet
        warnings.simplefilter("error")
        names = list_backbones()
    assert "broken" in names and "tiny_mlp" in names
    with pytest.warns(PluginWarning) as record, pytest.raises(PluginLoadError) as exc:
        create_backbone("broken")
    msgs = [str(w.message) for w in record if issubclass(w.category, PluginWarning)]
    assert len(msgs) == 1
    assert "'broken'" in msgs[0] and "ModuleNotFoundError" in msgs[0]
    assert "tle_no_such_module_xyz" in msgs[0]
    # the error names the failed plugin and why, not only "Unknown backbone"
    assert isinstance(exc.value, BackboneNotFoundError)
    assert "failed to load" in str(exc.value) and "tle_no_such_module_xyz" in str(exc.value)
    assert "Unknown backbone" not in str(exc.value)
    with warnings.catch_warnings():  # cached: no second warning on later lookups
        warnings.simplefilter("error")
        with pytest.raises(PluginLoadError, match="'broken' comes from plugin .*failed to load"):
            create_backbone("broken")
        assert create_backbone("tiny_mlp").num_features == 3
        assert create_backbone("mlp", in_features=2).num_features == 256
        with pytest.raises(BackboneNotFoundError, match="failed to load: .*tle_no_such_module"):
            create_backbone("brokn")  # an unknown name lists the plugins that failed


def test_broken_plugin_family_names_the_plugin(fake_plugins):
    eps, _ = fake_plugins
    eps.append(ep("fam/", "tle_no_such_module_xyz:family"))
    with pytest.warns(PluginWarning, match="'fam/'"):
        with pytest.raises(PluginLoadError, match="'fam/' comes from plugin .*ModuleNotFound"):
            create_backbone("fam/3")


def test_non_callable_plugin_only_warns(fake_plugins):
    eps, _ = fake_plugins
    eps.append(ep("nc", "tle_fake_plugin:NOT_CALLABLE"))
    with pytest.warns(PluginWarning, match="'nc'.*not callable"):
        with pytest.raises(PluginLoadError, match="'nc'.*not callable"):
            create_backbone("nc")


def test_plugin_returning_a_non_backbone_is_a_plugin_error(fake_plugins):
    eps, _ = fake_plugins
    eps.append(ep("stringy", "tle_fake_plugin:not_a_backbone"))
    with pytest.raises(PluginError, match="'stringy'.*returned str"):
        create_backbone("stringy")


def test_plugin_clashing_with_builtin_names_both(fake_plugins):
    eps, _ = fake_plugins
    eps.append(ep("mlp", "tle_fake_plugin:tiny_mlp"))
    with pytest.raises(BackboneNameClashError, match=r"built-in .*_mlp.*plugin .*tle_fake_plugin"):
        list_backbones()


def test_two_plugins_clashing_name_both(fake_plugins):
    eps, _ = fake_plugins
    eps += [ep("dup", "tle_fake_plugin:tiny_mlp"), ep("DUP", "tle_fake_plugin:family")]
    with pytest.raises(BackboneNameClashError, match=r"tiny_mlp.*family"):
        create_backbone("dup")


def test_plugin_named_like_a_member_of_a_builtin_family_clashes(fake_plugins):
    eps, _ = fake_plugins
    eps.append(ep("timm/resnet18", "tle_fake_plugin:tiny_mlp"))
    with pytest.raises(BackboneNameClashError,
                       match=r"'timm/resnet18' belongs to family 'timm/'.*_timm.*tle_fake_plugin"):
        create_backbone("timm/resnet18")


@pytest.mark.parametrize("order", [1, -1])
def test_plugin_member_of_a_plugin_family_clashes_in_any_order(fake_plugins, order):
    eps, _ = fake_plugins
    eps += [ep("fam/", "tle_fake_plugin:family"), ep("fam/7", "tle_fake_plugin:tiny_mlp")][::order]
    with pytest.raises(BackboneNameClashError, match=r"'fam/7' belongs to family 'fam/'"):
        list_backbones()


def test_plugin_name_with_an_inner_slash_and_no_family_is_skipped(fake_plugins):
    eps, _ = fake_plugins
    eps += [ep("foo/bar", "tle_fake_plugin:tiny_mlp"), ep("tiny_mlp", "tle_fake_plugin:tiny_mlp")]
    with pytest.warns(PluginWarning, match="'foo/bar'.*may only end a name"):
        names = list_backbones()
    assert "foo/bar" not in names and "tiny_mlp" in names


def test_builtin_registered_twice_names_both(monkeypatch):
    monkeypatch.setattr(registry, "_BUILTINS", dict(registry._BUILTINS))

    def create_other(pretrained=True, weights=None):
        """Another mlp."""

    with pytest.raises(BackboneNameClashError, match=r"_mlp\.create_mlp.*create_other"):
        register_backbone("mlp")(create_other)


def test_register_backbone_under_a_family_or_a_plugin_name_clashes(monkeypatch, fake_plugins):
    eps, _ = fake_plugins
    eps.append(ep("tiny_mlp", "tle_fake_plugin:tiny_mlp"))
    monkeypatch.setattr(registry, "_BUILTINS", dict(registry._BUILTINS))

    def create_other(pretrained=True, weights=None):
        """Another one."""

    with pytest.raises(BackboneNameClashError,
                       match=r"'timm/resnet18' belongs to family 'timm/'.*create_other"):
        register_backbone("timm/resnet18")(create_other)
    list_backbones()  # discovered: a plugin's name is taken too
    with pytest.raises(BackboneNameClashError, match=r"plugin .*tiny_mlp.*create_other"):
        register_backbone("tiny_mlp")(create_other)
    with pytest.raises(ValueError, match="may only end a name"):
        register_backbone("no/family")(create_other)
    assert "timm/resnet18" not in registry._BUILTINS and "tiny_mlp" not in registry._BUILTINS


@pytest.mark.parametrize("bad", ["Upper", "", " padded"])
def test_register_rejects_bad_names(bad):
    with pytest.raises(ValueError, match="lowercase"):
        register_backbone(bad)


def test_discovery_is_cached_until_refresh(fake_plugins):
    eps, calls = fake_plugins
    list_backbones()
    create_backbone("mlp", in_features=3)
    backbone_info("mlp")
    assert calls["n"] == 1
    eps.append(ep("late", "tle_fake_plugin:tiny_mlp"))
    assert "late" not in list_backbones()
    refresh_backbones()
    assert "late" in list_backbones()
    assert calls["n"] == 2


def test_unknown_name_is_value_error_with_close_matches():
    with pytest.raises(ValueError, match="Did you mean 'efficientnet_lite0'") as exc:
        create_backbone("efficientnet_lite")
    assert isinstance(exc.value, BackboneNotFoundError)
    assert "Available:" in str(exc.value) and "mlp" in str(exc.value)
    with pytest.raises(BackboneNotFoundError, match="Unknown backbone 'nope/x'"):
        create_backbone("nope/x")


def test_family_needs_a_model_and_name_must_be_str():
    with pytest.raises(BackboneNotFoundError, match="needs a model after the slash"):
        create_backbone("timm/")
    with pytest.raises(TypeError, match="non-empty str"):
        create_backbone(None)


def test_names_are_case_insensitive_and_family_suffix_keeps_case():
    bb = create_backbone("MLP", in_features=2, hidden_sizes=(4,))
    assert bb.num_features == 4
    assert create_backbone("TIMM/test_resnet", pretrained=False).config.name == "timm/test_resnet"


def test_backbone_info_concrete_and_family():
    info = backbone_info("efficientnet_lite0")
    assert info["source"].startswith("built-in")
    assert info["config"]["num_features"] == 1280 and info["modality"] == "image"
    assert info["num_parameters"] > 3_000_000
    fam = backbone_info("timm/")
    assert "config" not in fam and "timm" in fam["description"].lower()
    assert backbone_info("timm/test_resnet")["config"]["extra"]["arch"] == "test_resnet"


def test_listing_imports_no_heavy_library():
    # Lazy by design: listing names must not import timm, open_clip or
    # sentence-transformers (each costs seconds at start-up).
    code = (
        "import sys, tlestimators; tlestimators.list_backbones(); "
        "print(sorted(m for m in ('timm', 'open_clip', 'sentence_transformers') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
