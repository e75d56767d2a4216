import pytest

from cirbench.errors import UsageError
from cirbench.contracts.registry import Registry, RegistryError, methods


def test_builtin_methods_are_registered_with_alias():
    assert {"image-only", "text-only", "image+text", "pic2word", "combiner"} <= set(methods.names())
    assert methods.canonical("image-text") == "image+text"
    assert methods.get("combiner").supervised


def test_unknown_name_suggests_and_lists():
    with pytest.raises(UsageError) as err:
        methods.get("pic2wrd")
    assert "Did you mean 'pic2word'" in str(err.value)
    assert "image-only" in str(err.value)


def test_name_collision_is_an_error():
    reg = Registry("thing", "cirbench.none", "cirbench.encoders")

    @reg.register("a")
    class A:
        pass

    with pytest.raises(RegistryError, match="registered twice"):
        @reg.register("a")
        class B:
            pass
