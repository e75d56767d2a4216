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


def test_the_baselines_lead_every_table_in_their_own_places():
    """Tables list methods by display_order: image-only, text-only, image+text first, each in a place no
    other built-in method shares (a tie would fall back to the name and could reorder them)."""
    from cirbench.contracts.method import Method
    from cirbench.contracts.registry import methods

    orders = {name: methods.get(name).display_order for name in methods.names()}
    first = sorted(orders, key=lambda n: (orders[n], n))[:3]
    assert first == ["image-only", "text-only", "image+text"]
    for name in first:
        assert [n for n, o in orders.items() if o == orders[name]] == [name]
    # every method placed on purpose has a place of its own (those left at the default sort by name)
    placed = [o for o in orders.values() if o != Method.display_order]
    assert len(placed) == len(set(placed)) >= 10
