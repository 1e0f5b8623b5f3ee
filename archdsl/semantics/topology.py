"""Elaboration of `topology` declarations: networks, twins, state and phases → TopologyIR.

A phase body is elaborated like a network body into its own IR graph. Applying a network to
tensors adds one `net` node (its shape comes from elaborating that network at those input
shapes); states appear as `state` nodes; `after` statements record updates whose tensor
arguments become extra outputs of the phase graph, kept for `after_step()`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from archdsl.errors import ArchError, Span, did_you_mean
from archdsl.ir.cost import cost
from archdsl.ir.graph import Graph, Node
from archdsl.ir.names import check_name
from archdsl.ir.recipe import OPTIMIZERS, OptimizerSpec
from archdsl.ir.schedule import SCHEDULES, LRSchedule
from archdsl.ir.topology import PENALTIES, Action, EmaSpec, NetDecl, Phase, StateDecl, TopologyIR
from archdsl.ir.updates import ACTIONS, STATE_INITS
from archdsl.semantics.calls import Scope
from archdsl.semantics.elaborate import Elaborator
from archdsl.semantics.statements import Frame, fill_value, top_call
from archdsl.semantics.values import BlockRef, Env, Outputs, Partial, Tensor, describe
from archdsl.syntax import ast as A

STATE_DTYPES = ("float32", "float64", "int64", "bool")


@dataclass(frozen=True)
class NetRef:
    """A topology's network, applied to tensors like a block: `x -> query`."""
    name: str
    shuffle: bool = False
    penalty: str | None = None    # grad_penalty(net, kind): the node is the penalty, a scalar


@dataclass(frozen=True)
class ParamRef:
    """A topology-level parameter (`param logit_scale: [] = 2.659`) where `update=[…]` names it."""
    name: str


@dataclass(frozen=True)
class EmaVal:
    source: NetRef
    spec: EmaSpec


def ema(source, momentum: float = 0.999, schedule: str = "constant", end: float = 1.0,
        total_steps: int = 1, start_step: int = 0, buffers: bool = False, with_phase=None):
    """`net key = ema(query, 0.999)`: a momentum twin of a network (see EmaSpec). m is the weight
    on the OLD value. start_step: with the constant schedule, m = 0 before that many optimizer
    steps (the twin is a plain copy of the source each step; BigGAN's G-EMA, `start_step=1000`);
    with the cosine schedule, the cosine starts there. buffers: average the buffers too, the
    same way (BigGAN-PyTorch's utils.ema runs over the whole state_dict); else the twin's
    buffers are its own (its BN statistics move only when it runs). with_phase: update as each
    run of that phase starts instead of in after_step (StyleGAN's and PGGAN's Gs follow G with
    the D-step, before the G-step of the same iteration)."""
    if start_step < 0:
        raise ValueError("ema start_step must be non-negative")
    if not isinstance(source, NetRef):
        raise TypeError("ema() takes a network declared with `net`")
    if not 0.0 <= momentum <= 1.0 or not 0.0 <= end <= 1.0:
        raise ValueError("ema momentum and end must be in [0, 1] (the weight on the old value)")
    if schedule not in ("constant", "cosine"):
        raise ValueError("ema schedule is 'constant' or 'cosine'")
    if total_steps < 1:
        raise ValueError("ema total_steps must be at least 1")
    if not isinstance(buffers, bool):
        raise TypeError("ema buffers is true or false")
    if with_phase is not None and not isinstance(with_phase, str):
        raise TypeError("ema with_phase names a phase: with_phase=\"d_step\"")
    return EmaVal(source, EmaSpec(source.name, float(momentum), schedule, float(end), int(total_steps),
                                  int(start_step), buffers, with_phase))


def shuffle_bn(net):
    """`x -> shuffle_bn(key)`: run `key` on a batch permuted across samples (and ranks), then
    undo the permutation, so BatchNorm statistics cannot leak the positive pair (MoCo)."""
    if not isinstance(net, NetRef):
        raise TypeError("shuffle_bn() takes a network declared with `net`")
    return NetRef(net.name, shuffle=True)


def grad_penalty(net, kind: str = "r1"):
    """`gp = [real, labels] -> grad_penalty(D, kind="r1")`: the gradient penalty of a
    discriminator, a scalar, computed with create_graph=True so it trains D (second order).
    kind "r1": inputs (real, *extra), mean ‖∇ₓD(x)‖² at the real samples (StyleGAN: × gamma / 2).
    kind "wgan_gp": inputs (real, fake, *extra), mean (‖∇D(x̂)‖ − 1)² at random interpolates x̂
    (PGGAN: × lambda). Extra inputs (labels, alpha) go to the network as they are."""
    if not isinstance(net, NetRef) or net.shuffle or net.penalty:
        raise TypeError("grad_penalty() takes a network declared with `net`")
    if kind not in PENALTIES:
        raise ValueError(f"grad_penalty kind must be one of {', '.join(PENALTIES)}, got {kind!r}")
    return NetRef(net.name, penalty=kind)


@dataclass(frozen=True)
class FrozenVal:
    network: Any


def frozen(network):
    """`net teacher = frozen(resnet50)`: a network no phase trains and that always runs in eval
    mode (BatchNorm running statistics, no dropout): a distillation teacher loaded from a
    checkpoint (`topo.nets["teacher"].load_state_dict(...)`)."""
    if isinstance(network, (NetRef, EmaVal, FrozenVal)):
        raise TypeError("frozen() takes a network or a stdlib variant name, not a topology's `net`")
    return FrozenVal(network)


TOPOLOGY_BUILTINS = {"ema": ema, "shuffle_bn": shuffle_bn, "grad_penalty": grad_penalty,
                     "frozen": frozen, **SCHEDULES, **OPTIMIZERS}


class TopologyElaborator(Elaborator):
    def topology(self, callee, overrides: dict[str, Any], span: Span | None,
                 variant: str | None = None) -> TopologyIR:
        block, args, kwargs, arg_spans, kw_spans = top_call(callee, overrides, span)
        span = span or getattr(callee, "span", None)  # the variant's call, for a missing argument
        decl = block.decl
        env = Env(block.module, None, block.module.prelude)
        given = self.bind_params(decl, args, kwargs, env, span, arg_spans, kw_spans)
        self.ir = TopologyIR(decl.name, variant, {}, {}, {})
        self.ir.args = {p.name: env.vars[p.name] for p in decl.params if p.name in env.vars}
        self.callees: dict[str, Any] = {}   # each net's network or block (the source's, for twins)
        self.in_stmts: list[A.InStmt] = []
        frame = Frame(decl, Scope("", decl.name), None, given=given)
        self.stack.append(frame)
        try:
            phases = []
            for s in decl.body:
                if isinstance(s, A.PhaseStmt):
                    phases.append(s)
                else:
                    self.exec_top(s, env)
            self.refuse_tensors_outside_phases()
            if not phases:
                raise ArchError(f"topology '{decl.name}' has no `phase`", decl.span,
                                hint="add `phase train { … loss = … }`")
            for p in phases:
                self.exec_phase(p, env)
            self.check_nets_called()
            self.check_twin_phases()
        finally:
            self.stack.pop()
        if isinstance(env.vars.get("lr"), LRSchedule):  # `lr = cosine_lr(...)`: the declared schedule
            self.ir.lr = env.vars["lr"]
        return self.ir

    def check_nets_called(self):
        """A network is built for the input shapes its phases call it with: one never called has none."""
        for name, net in self.ir.nets.items():
            if net.twin is None and not net.graphs:
                raise ArchError(f"net '{name}' is never called in a phase", net.span,
                                hint=f"call it in a phase (`y = x -> {name}`) or remove the `net`")

    def check_twin_phases(self):
        for name, net in self.ir.nets.items():
            phase = net.twin.with_phase if net.twin is not None else None
            if phase is not None and phase not in self.ir.phases:
                raise ArchError(f"ema '{name}' follows phase '{phase}', which this topology does not declare",
                                net.span, hint=did_you_mean(phase, list(self.ir.phases)) or
                                f"phases: {', '.join(self.ir.phases)}")

    # ---- topology-level statements
    def exec_top(self, s: A.Stmt, env: Env):
        if isinstance(s, A.InStmt):
            self.in_stmts.append(s)
            self.exec_in(s, env)
        elif isinstance(s, A.NetStmt):
            self.exec_net(s, env)
        elif isinstance(s, A.StateStmt):
            self.exec_state(s, env)
        elif isinstance(s, A.TensorDecl) and s.kind == "param":
            self.exec_topology_param(s, env)
        elif isinstance(s, (A.Assign, A.Unpack, A.If, A.For, A.AssertStmt)):
            self.exec(s, env)
        else:
            raise ArchError(f"`{_keyword(s)}` belongs inside a `phase`", s.span,
                            hint="a topology body holds `in`, `net`, `state`, values, asserts and phases")

    def refuse_tensors_outside_phases(self):
        """The topology body's graph holds its inputs only: a tensor computed there would belong
        to no phase's graph."""
        for n in self.graph.nodes():
            if n.kind != "input":
                raise ArchError("a tensor is computed outside any phase", n.span,
                                hint="each phase is its own graph: compute tensors inside the phase "
                                     "that uses them (a topology body holds `in`, `net`, `state`, "
                                     "values, asserts and phases)")

    def exec_net(self, s: A.NetStmt, env: Env):
        if s.name in self.ir.nets:
            raise ArchError(f"network '{s.name}' declared twice", s.span)
        check_name(s.name, "network", s.span)
        value = self.eval(s.value, env)
        is_frozen = isinstance(value, FrozenVal)
        value = value.network if is_frozen else value
        if isinstance(value, str):
            value = self.stdlib_variant(value, s.value.span)
        if is_frozen and _kind(value) in ("network", "block"):
            decl = NetDecl(s.name, _block(value).name, s.span, frozen=True)
        elif isinstance(value, EmaVal):
            decl = NetDecl(s.name, self.ir.nets[value.source.name].network, s.span, twin=value.spec)
            value = self.callees[value.source.name]
        elif isinstance(value, (BlockRef, Partial)) and _kind(value) in ("network", "block"):
            decl = NetDecl(s.name, _block(value).name, s.span)
        else:
            raise ArchError(f"`net {s.name}` needs a network", s.value.span, found=describe(value),
                            hint="a network or block (`encoder(num_classes=128)`), a stdlib variant "
                                 "name, or `ema(other_net, m)`")
        self.ir.nets[s.name] = decl
        self.callees[s.name] = value
        env.vars[s.name] = NetRef(s.name)

    def stdlib_variant(self, name: str, span: Span):
        from archdsl.semantics.catalog import entry, open_variant
        try:
            module, named, _ = open_variant(name)
            callee, _, _ = entry(module, named)
        except ArchError as err:
            hint = err.hint if err.hint and err.hint.startswith("did you mean") else \
                "a string here names a stdlib variant (`net f = \"resnet50\"`); to use a network " \
                "from a file, import it (`from mynets import Encoder`)"
            raise ArchError(err.message, span, hint=hint) from None
        return callee

    def exec_state(self, s: A.StateStmt, env: Env):
        check_name(s.name, "state", s.span)
        shape = tuple(self.size_value(self.eval(d, env), d.span, "a state size") for d in s.shape)
        init = 0.0 if s.init is None else self.eval(s.init, env)
        if isinstance(init, LRSchedule):  # a scheduled state: set to the schedule's value each step
            if shape != () and shape != (1,):
                raise ArchError(f"state '{s.name}' follows a schedule: it must be a scalar `[]`", s.span)
        elif isinstance(init, str):
            if init not in STATE_INITS:
                raise ArchError(f"unknown state initialiser '{init}'", s.init.span,
                                hint=did_you_mean(init, STATE_INITS) or f"one of {', '.join(STATE_INITS)}")
        elif isinstance(init, bool) or not isinstance(init, (int, float)):
            raise ArchError(f"state '{s.name}' initial value must be a number or an initialiser name",
                            s.init.span, found=describe(init))
        else:
            init = fill_value(init, (s.init or s).span)
        if s.dtype not in STATE_DTYPES:
            raise ArchError(f"unknown state dtype '{s.dtype}'", s.span,
                            hint=did_you_mean(s.dtype, STATE_DTYPES) or f"one of {', '.join(STATE_DTYPES)}")
        if s.name in self.ir.states or s.name in self.ir.nets:
            raise ArchError(f"'{s.name}' declared twice", s.span)
        self.ir.states[s.name] = StateDecl(s.name, shape, init, s.dtype, s.span)

    def exec_topology_param(self, s: A.TensorDecl, env: Env):
        """`param logit_scale: [] = 2.659`: a trained tensor that belongs to no network (CLIP's
        learned temperature). Held as a trainable state; phases train it when `update` lists it."""
        check_name(s.name, "parameter", s.span)
        shape = tuple(self.size_value(self.eval(d, env), d.span, "a parameter size") for d in s.shape)
        init = 0.0 if s.init is None else self.eval(s.init, env)
        if isinstance(init, bool) or not isinstance(init, (int, float)):
            raise ArchError(f"topology parameter '{s.name}' needs a number as its initial value",
                            (s.init or s).span, found=describe(init), hint="e.g. `param logit_scale: [] = 2.659`")
        if s.name in self.ir.states or s.name in self.ir.nets:
            raise ArchError(f"'{s.name}' declared twice", s.span)
        init = fill_value(init, (s.init or s).span)
        self.ir.states[s.name] = StateDecl(s.name, shape, init, "float32", s.span, trainable=True)
        env.vars[s.name] = ParamRef(s.name)

    # ---- phases
    def exec_phase(self, p: A.PhaseStmt, env: Env):
        if p.name in self.ir.phases:
            raise ArchError(f"phase '{p.name}' declared twice", p.span)
        options = {a.name: self.eval(a.value, env) for a in p.args}
        known = ["update", "times", "freeze", "freeze_steps", "optimizer"]
        unknown = set(options) - set(known)
        if unknown or any(a.name is None for a in p.args):
            raise ArchError("a phase takes `update=[nets]`, `times=k`, `freeze=[\"net.param\"], "
                            "freeze_steps=n` and `optimizer=sgd(...)`", p.span,
                            hint=did_you_mean(next(iter(unknown)), known) if unknown else None)
        optimizer = options.get("optimizer")
        if optimizer is not None and not isinstance(optimizer, OptimizerSpec):
            span = next(a.value.span for a in p.args if a.name == "optimizer")
            raise ArchError("`optimizer` takes sgd(...), adam(...), adamw(...), lars(...) or larc(...)", span,
                            found=describe(optimizer), hint="optimizer=sgd(lr=0.03, momentum=0.9)")
        update = options.get("update", [NetRef(n) for n, d in self.ir.nets.items()
                                         if d.twin is None and not d.frozen])
        update = update if isinstance(update, (list, tuple)) else [update]
        trained_params = tuple(u.name for u in update if isinstance(u, ParamRef))
        update = [u for u in update if not isinstance(u, ParamRef)]
        for u in update:
            if not isinstance(u, NetRef):
                raise ArchError("`update` lists networks declared with `net`", p.span, found=describe(u))
            if self.ir.nets[u.name].twin is not None:
                raise ArchError(f"'{u.name}' is a momentum twin: it is never trained by a phase", p.span,
                                hint="twins follow their source through `after_step()`")
            if self.ir.nets[u.name].frozen:
                raise ArchError(f"'{u.name}' is frozen: no phase trains it", p.span,
                                hint="declare it without `frozen(...)` to train it")
        repeat = self.int_value(options.get("times", 1), p.span, "a phase's `times`")
        if repeat < 1:
            raise ArchError("a phase runs at least once per round (`times` ≥ 1)", p.span)
        saved = self.graph, self.used, self.containers, self.frame.scope
        self.graph, self.used, self.containers = Graph(f"{self.ir.name}.{p.name}"), set(), set()
        self.frame.scope = Scope("", self.ir.name)
        self.logs: dict[str, str] = {}
        self.actions: list[Action] = []
        try:
            penv = env.child()
            for s in self.in_stmts:
                self.exec_in(s, penv)
            for st in self.ir.states.values():
                node = Node(f"state.{st.name}", None, {"name": st.name}, [], st.shape, st.span,
                            "", self.ir.name, dtype=st.dtype, kind="state")
                self.add_node(node, st.span)
                penv.vars[st.name] = Tensor(node.id, st.shape)
            for s in p.body:
                self.exec_phase_stmt(s, penv)
            loss = penv.vars.get("loss")
            if not isinstance(loss, Tensor) or loss.shape != ():
                raise ArchError(f"phase '{p.name}' must set `loss` to a scalar", p.span,
                                found=describe(loss) if loss is not None else "no `loss`",
                                hint="end the phase with `loss = some_loss(...)`")
            graph = self.graph
            graph.single_output = False
            graph.outputs = {"loss": loss.node, **{f"log.{k}": v for k, v in self.logs.items()}}
            for a in self.actions:
                for t in a.tensors:
                    graph.outputs[f"keep.{t}"] = t
            _drop_dead(graph)
            self.ir.phases[p.name] = Phase(p.name, graph, [u.name for u in update], loss.node,
                                           dict(self.logs), list(self.actions), repeat, p.span)
            self.ir.phases[p.name].params = trained_params
            self.ir.phases[p.name].optimizer = optimizer
            self._check_trains_something(p, update, trained_params)
            if "freeze" in options or "freeze_steps" in options:
                phase = self.ir.phases[p.name]
                phase.freeze, phase.freeze_steps = self._freeze(options, phase.update, p.span)
        finally:
            self.graph, self.used, self.containers, self.frame.scope = saved
            self.logs = None

    def exec(self, s: A.Stmt, env: Env):
        in_phase = getattr(self, "logs", None) is not None
        if isinstance(s, (A.LogStmt, A.AfterStmt)) and in_phase:
            return self.exec_phase_stmt(s, env)   # `log` / `after` inside a phase's `if` or `for`
        if isinstance(s, A.InStmt) and not in_phase:
            self.in_stmts.append(s)   # an input under a topology-level `if` (raw images or views)
        return super().exec(s, env)

    def _check_trains_something(self, p: A.PhaseStmt, update: list, params: tuple):
        """A phase whose optimizer step would change nothing is a mistake (an empty `update`, or
        networks without parameters): say so rather than train silently."""
        if params:
            return
        nets = [self.ir.nets[u.name] for u in update]
        # a listed network not called yet has no graph: it may hold parameters
        if any(not d.graphs or any(cost(g).totals.params for g in d.graphs.values()) for d in nets):
            return
        listed = ", ".join(d.name for d in nets)
        raise ArchError(f"phase '{p.name}' updates no parameter", p.span,
                        found=f"update=[{listed}], networks without parameters" if nets else "update=[]",
                        hint=f"list the networks this phase trains: `phase {p.name}(update=[net])`")

    def exec_phase_stmt(self, s: A.Stmt, env: Env):
        if isinstance(s, A.LogStmt):
            value = self.eval(s.value, env)
            if not isinstance(value, Tensor):
                raise ArchError("`log` needs a tensor", s.value.span, found=describe(value))
            self.logs[s.name] = value.node
        elif isinstance(s, A.AfterStmt):
            self.exec_after(s, env)
        elif isinstance(s, (A.NetStmt, A.StateStmt, A.PhaseStmt, A.OutStmt, A.TensorDecl, A.InStmt)):
            raise ArchError(f"`{_keyword(s)}` is not allowed inside a phase", s.span,
                            hint="declare inputs, networks and state at the topology level")
        else:
            self.exec(s, env)

    def exec_after(self, s: A.AfterStmt, env: Env):
        call = s.call
        if not (isinstance(call, A.Call) and isinstance(call.func, A.Name)):
            raise ArchError("`after` takes an update call: `after enqueue(queue, ptr, k)`", s.span)
        kind = call.func.id
        if kind not in ACTIONS:
            raise ArchError(f"unknown after-step update '{kind}'", call.func.span,
                            hint=did_you_mean(kind, ACTIONS) or f"one of {', '.join(ACTIONS)}")
        spec = ACTIONS[kind]
        states, tensors, options, nets = [], [], {}, []
        for a in call.args:
            v = self.eval(a.value, env)
            if a.name is not None:
                options[a.name] = v
            elif isinstance(v, NetRef) and spec.n_nets:
                nets.append(v.name)
            elif isinstance(v, Tensor) and self.graph.node(v.node).kind == "state":
                states.append(self.graph.node(v.node).attrs["name"])
            elif isinstance(v, Tensor):
                tensors.append(v.node)
            else:
                raise ArchError(f"'{kind}' takes states and tensors by position", a.span, found=describe(v))
        if len(states) != spec.n_states or len(tensors) != spec.n_tensors:
            raise ArchError(f"'{kind}' takes {spec.n_states} state(s) then {spec.n_tensors} tensor(s), "
                            f"got {len(states)} and {len(tensors)}", s.span, hint=spec.usage)
        bad = set(options) - set(spec.options)
        if bad:
            raise ArchError(f"'{kind}' has no option '{sorted(bad)[0]}'", s.span,
                            hint=did_you_mean(sorted(bad)[0], spec.options))
        problem = spec.check([self.ir.states[n].shape for n in states],
                             [self.graph.node(t).shape for t in tensors], options)
        if problem:
            raise ArchError(f"{kind}: {problem}", s.span, hint=spec.usage)
        if spec.n_nets:
            options = {**options, "net": self._net_param(kind, nets, spec, options, s.span)}
        self.actions.append(Action(kind, states, tensors, options, s.span))

    def _freeze(self, options: dict, update: list[str], span: Span) -> tuple[tuple, int]:
        """`freeze=["head.prototypes"], freeze_steps=313`: those parameters (a network, then a
        parameter path or a prefix of paths) take no part in the phase's first `freeze_steps`
        steps, so they get no gradient and the optimizer leaves them alone (SwAV)."""
        entries = options.get("freeze", [])
        entries = [entries] if isinstance(entries, str) else entries
        steps = options.get("freeze_steps")
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0 or \
                not isinstance(entries, (list, tuple)):
            raise ArchError("`freeze` lists \"net.param\" paths and `freeze_steps` is a count ≥ 0", span,
                            hint='freeze=["head.prototypes"], freeze_steps=313')
        if not entries:  # an option that freezes nothing (`freeze=official ? [...] : []`)
            return (), 0
        out = []
        for e in entries:
            net, _, prefix = str(e).partition(".")
            if net not in update:
                raise ArchError(f"freeze: '{net}' is not a network this phase updates", span,
                                hint=did_you_mean(net, update) or f"one of {', '.join(update)}")
            names = [w.name for w in self.ir.nets[net].first_graph.weights() if w.is_param]
            if not prefix or not any(n == prefix or n.startswith(prefix + ".") for n in names):
                raise ArchError(f"freeze: network '{net}' has no parameter under '{prefix}'", span,
                                hint=did_you_mean(prefix, names) or None)
            out.append((net, prefix))
        return tuple(out), steps

    def _net_param(self, kind: str, nets: list[str], spec, options: dict, span: Span) -> str:
        """The network of an update that changes a network's parameter (`param=` must name one)."""
        if len(nets) != spec.n_nets:
            raise ArchError(f"'{kind}' takes {spec.n_nets} network(s) declared with `net`", span, hint=spec.usage)
        decl = self.ir.nets[nets[0]]
        if decl.twin is not None or not decl.graphs:
            raise ArchError(f"'{kind}' needs a trained network applied in the phase, not '{nets[0]}'", span,
                            hint=spec.usage)
        names = [w.name for w in decl.first_graph.weights() if w.is_param]
        param = options.get("weight")
        if param not in names:
            raise ArchError(f"network '{nets[0]}' has no parameter {param!r}", span,
                            hint=did_you_mean(str(param), names) or spec.usage)
        if not isinstance(options.get("dim", 1), int) or not -2 <= options.get("dim", 1) <= 1:
            raise ArchError(f"'{kind}': dim must be 0 or 1 (-2 or -1)", span, hint=spec.usage)
        return nets[0]

    # ---- applying a network
    def call(self, fn, args, kwargs, span, arg_spans=(), kw_spans=None):
        if isinstance(fn, NetRef):
            if kwargs or not args or not all(isinstance(a, Tensor) for a in args):
                raise ArchError(f"network '{fn.name}' is applied to tensors only", span)
            return self.apply(fn, list(args), None, span)
        return super().call(fn, args, kwargs, span, arg_spans, kw_spans)

    def apply(self, fn, inputs, label, span):
        if isinstance(fn, NetRef):
            return self.net_node(fn, inputs, label, span)
        return super().apply(fn, inputs, label, span)

    def net_node(self, ref: NetRef, inputs: list[Tensor], label: str | None, span: Span):
        decl = self.ir.nets[ref.name]
        net_inputs = _penalty_inputs(ref, inputs, span) if ref.penalty else inputs
        shapes = tuple(tuple(t.shape) for t in net_inputs)
        graph = decl.graphs.get(shapes)
        if graph is None:
            graph = Elaborator(ref.name, list(shapes)).network(self.callees[ref.name], {}, span)
            if decl.graphs:  # one module serves every input size: its weights must not depend on it
                first_shapes, first = next(iter(decl.graphs.items()))
                if _weight_shapes(first) != _weight_shapes(graph):
                    raise ArchError(f"network '{ref.name}' has different weights for inputs "
                                    f"{[list(s) for s in shapes]} than for {[list(s) for s in first_shapes]}",
                                    span, hint="a network applied at several input sizes must not depend "
                                               "on them (pool before flattening)")
            decl.graphs[shapes] = graph
        outs = [graph.node(i).shape for i in graph.outputs.values()]
        path = self.claim(self.frame.scope, label, ref.name, span)
        attrs = {"name": ref.name, "shuffle": ref.shuffle, "flops": cost(graph).totals.flops,
                 "outputs": list(graph.outputs) if not graph.single_output else None}
        shape = outs[0] if graph.single_output else tuple(outs)
        if ref.penalty:
            if not graph.single_output:
                raise ArchError(f"grad_penalty needs '{ref.name}' to have one output", span)
            attrs["penalty"], shape = ref.penalty, ()
        node = Node(path, None, attrs, [t.node for t in inputs], shape, span, "", self.ir.name, kind="net")
        self.add_node(node, span)
        tensor = Tensor(path, shape)
        if graph.single_output:
            return tensor
        parts = [self.eval_index_of(tensor, k, span) for k in range(len(outs))]
        return Outputs(tuple(graph.outputs), tuple(parts))

    def eval_index_of(self, tensor: Tensor, k: int, span: Span) -> Tensor:
        from archdsl.semantics.values import OpRef
        return self.make_node(OpRef("getitem", self.ops["getitem"]), [], {"index": k}, [tensor], None, span)


def _penalty_inputs(ref: NetRef, inputs: list[Tensor], span: Span) -> list[Tensor]:
    """The network's own inputs of a grad_penalty node: wgan_gp takes (real, fake, *extra)
    and runs the network on one tensor of real's shape in their place."""
    need = 2 if ref.penalty == "wgan_gp" else 1
    if len(inputs) < need:
        raise ArchError(f"grad_penalty(kind=\"{ref.penalty}\") needs {need} input(s) "
                        f"({'real, fake' if need == 2 else 'real'}, then the network's other inputs)", span)
    if need == 2:
        if tuple(inputs[0].shape) != tuple(inputs[1].shape):
            raise ArchError(f"wgan_gp interpolates real and fake: shapes {list(inputs[0].shape)} and "
                            f"{list(inputs[1].shape)} differ", span)
        return [inputs[0], *inputs[2:]]
    return inputs


def _block(value) -> BlockRef | None:
    block = value.callee if isinstance(value, Partial) else value
    return block if isinstance(block, BlockRef) else None


def _kind(value) -> str | None:
    block = _block(value)
    return block.decl.kind if block is not None else None


def _keyword(s: A.Stmt) -> str:
    return {A.LogStmt: "log", A.AfterStmt: "after", A.NetStmt: "net", A.StateStmt: "state",
            A.PhaseStmt: "phase", A.OutStmt: "out", A.TensorDecl: "param", A.InStmt: "in"}.get(type(s), "?")


def _weight_shapes(graph: Graph) -> list[tuple[str, tuple]]:
    return [(w.name, w.shape) for w in graph.weights()]


def _drop_dead(graph: Graph) -> None:
    """Remove what no output of a phase (loss, logs, after-step tensors) depends on: such a value
    is neither built nor counted, and a dead network call does not move its BN statistics."""
    import networkx as nx
    live = set(graph.outputs.values())
    for node in list(live):
        live |= nx.ancestors(graph.g, node)
    graph.g.remove_nodes_from([n.id for n in graph.nodes()
                               if n.id not in live and n.kind not in ("input", "state")])
