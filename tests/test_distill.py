"""Teacher → student topologies (stdlib/train/distill.arch): SimCLRv2 / MEAL V2 distillation,
Noisy Student, Meta Pseudo Labels — each loss against a hand computation on tiny networks."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import archdsl
from archdsl import ArchError


pytestmark = pytest.mark.usefixtures("one_thread")


TINY = """
network Tiny(num_classes: int = 10, width: int = 8) {
  in x: [B, 3, H = 16, W = 16]
  y = x -> conv1: conv(width, 3, stride=2) -> bn1: bn -> relu -> mean(dims=[2, 3])
  out y -> fc: linear(num_classes)
}
from train.distill import Distill, MEALV2, NoisyStudent, MetaPseudoLabels
"""


def topo(call: str, shapes, seed: int = 0):
    return archdsl.load_spec(source=TINY + f"variant t = {call}\n", seed=seed, input_shape=shapes)


IMG = (8, 3, 16, 16)
DISTILL = "Distill(teacher=Tiny(width=12), student=Tiny, num_classes=10, img=16, tau=2.0)"


def data(seed=0, n=8, k=10):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 16, 16, generator=g), torch.randint(0, k, (n,), generator=g)


# ---- a frozen teacher

def test_frozen_teacher_is_never_trained_and_stays_in_eval_mode():
    t = topo(DISTILL, [IMG])
    teacher = t.nets["teacher_net"]
    assert not any(p.requires_grad for p in teacher.parameters())
    t.train()
    assert not teacher.training and t.nets["student_net"].training
    assert {id(p) for p in t.parameters(phase="train")} == {id(p) for p in t.nets["student_net"].parameters()}
    stats = {k: v.clone() for k, v in teacher.state_dict().items()}
    x, _ = data()
    t(x).loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    # BatchNorm running statistics untouched: the teacher ran in eval mode
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in stats.items())
    with pytest.raises(ArchError, match="frozen"):
        archdsl.load_topology(source=TINY + """
topology Bad() {
  in x: [B, 3, H = 16, W = 16]
  net t = frozen(Tiny())
  phase train(update=[t]) { loss = mean((x -> t), dims=[0, 1]) }
}
""")


def test_distillation_loss_is_tau_squared_kl_to_the_teacher():
    t = topo(DISTILL, [IMG])
    x, _ = data()
    with torch.no_grad():
        s, te = t.nets["student_net"](x), t.nets["teacher_net"](x)
    p = F.softmax(te / 2.0, dim=1)
    kl = (p * (p.log() - F.log_softmax(s / 2.0, dim=1))).sum(dim=1).mean() * 4.0
    torch.testing.assert_close(t(x).loss, kl)


def test_meal_v2_targets_are_the_average_of_the_teachers_softmax():
    t = topo("MEALV2(teacher_a=Tiny(width=4), teacher_b=Tiny(width=6), student=Tiny, num_classes=10, "
             "img=16)", [IMG])
    x, _ = data(1)
    with torch.no_grad():
        target = (F.softmax(t.nets["teacher_a_net"](x), 1) + F.softmax(t.nets["teacher_b_net"](x), 1)) / 2
        s = t.nets["student_net"](x)
    torch.testing.assert_close(t(x).loss, -(target * F.log_softmax(s, 1)).sum(1).mean())


# ---- Noisy Student

NOISY = "NoisyStudent(teacher=Tiny, student=Tiny(width=16), num_classes=10, img=16{})"


def test_noisy_student_loss_and_a_clean_teacher():
    t = topo(NOISY.format(", ra_n=0"), [IMG, (8,), (12, 3, 16, 16)])
    (x, y), (u, _) = data(2), data(3, n=12)
    with torch.no_grad():
        soft = F.softmax(t.nets["teacher_net"](u), dim=1)
        sl, su = t.nets["student_net"](x), t.nets["student_net"](u)
    expected = F.cross_entropy(sl, y) + -(soft * F.log_softmax(su, 1)).sum(1).mean()
    torch.testing.assert_close(t(x, y, u).loss, expected)
    # with noise on, the teacher still reads the unlabeled input itself; the student reads augmented images
    ir = archdsl.load_topology(source=TINY + f"variant t = {NOISY.format('')}\n",
                               input_shape=[IMG, (8,), (12, 3, 16, 16)])
    g = ir.phases["train"].graph
    nets = {n.attrs["name"]: [] for n in g.nodes() if n.kind == "net"}
    for n in g.nodes():
        if n.kind == "net":
            nets[n.attrs["name"]].append(g.node(n.inputs[0]).title)
    assert nets == {"teacher_net": ["input"], "student_net": ["randaugment", "randaugment"]}


def test_noisy_student_short_run_lowers_the_loss():
    g = torch.Generator().manual_seed(0)
    protos = 2 * torch.randn(10, 3, 1, 1, generator=g)
    y = torch.arange(32) % 10
    x = protos[y] + 0.5 * torch.randn(32, 3, 16, 16, generator=g)
    u = protos[torch.arange(32) % 10] + 0.5 * torch.randn(32, 3, 16, 16, generator=g)
    t = topo(NOISY.format(", ra_m=5"), [IMG, (8,), (8, 3, 16, 16)], seed=1)
    from archdsl.topology.train import train
    curve = [h.losses["train"] for h in train(t, 15, lr=0.03, data=[x, y, u])]
    # the pseudo-labeled term cannot fall below the (fixed) teacher's entropy: compare the drop
    assert sum(curve[-4:]) / 4 < sum(curve[:4]) / 4 - 0.2, curve


# ---- Meta Pseudo Labels

MPL = "MetaPseudoLabels(teacher=Tiny(width=6), student=Tiny, num_classes=10, img=16)"


def test_mpl_teacher_learns_from_the_change_in_the_students_labeled_loss():
    t = topo(MPL, [IMG, (8,), (12, 3, 16, 16)])
    (xl, yl), (xu, _) = data(4), data(5, n=12)
    teacher, student = t.nets["teacher_net"], t.nets["student_net"]
    s_opt = torch.optim.SGD(t.parameters(phase="student_step"), lr=0.5)
    t_opt = torch.optim.SGD(t.parameters(phase="teacher_step"), lr=0.1)
    with torch.no_grad():
        y_hat = teacher(xu).argmax(dim=1)              # hard pseudo labels of the teacher
        old = F.cross_entropy(student(xl), yl)          # the student's labeled loss before its step
    out = t(xl, yl, xu, phase="student_step")
    with torch.no_grad():
        torch.testing.assert_close(out.loss, F.cross_entropy(student(xu), y_hat))
    out.loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    s_opt.step()
    s_opt.zero_grad()
    # the teacher's phase gets a fresh batch: the carried values come from the student's phase
    (xl2, yl2), (xu2, _) = data(6), data(7, n=12)
    out = t(xl2, yl2, xu2, phase="teacher_step")
    assert torch.equal(t.state.pseudo, y_hat) and torch.equal(t.state.unlabeled, xu)
    with torch.no_grad():
        new = F.cross_entropy(student(xl), yl)          # after the step, same labeled batch
    h = (old - new).item()
    assert h == pytest.approx(out.logs["feedback"].item(), abs=1e-5)
    expected = h * F.cross_entropy(teacher(xu), y_hat) + F.cross_entropy(teacher(xl2), yl2)
    torch.testing.assert_close(out.loss, expected)
    out.loss.backward()
    assert all(p.grad is None for p in student.parameters())
    # the gradient: h times the gradient of the teacher's CE on its pseudo labels (+ its own CE)
    ref = [torch.autograd.grad(expected, p, retain_graph=True)[0] for p in teacher.parameters()]
    for p, g in zip(teacher.parameters(), ref):
        torch.testing.assert_close(p.grad, g)
    t_opt.step()
    t.after_step()
    assert int(t.steps) == 1


def test_mpl_feedback_sign_rewards_helpful_pseudo_labels():
    """When the pseudo labels are the true labels, the student's step lowers its labeled loss:
    h > 0, and the teacher's step raises the probability of those labels."""
    t = topo(MPL, [IMG, (8,), (8, 3, 16, 16)], seed=3)
    x, y = data(8)
    teacher = t.nets["teacher_net"]
    with torch.no_grad():
        y_hat = teacher(x).argmax(1)
    s_opt = torch.optim.SGD(t.parameters(phase="student_step"), lr=0.5)
    out = t(x, y_hat, x, phase="student_step")  # labeled batch = the pseudo-labeled batch
    out.loss.backward()
    s_opt.step()
    out = t(x, y_hat, x, phase="teacher_step")
    assert out.logs["feedback"].item() > 0


def test_mpl_short_run_lowers_the_students_labeled_loss():
    g = torch.Generator().manual_seed(0)
    protos = 2 * torch.randn(10, 3, 1, 1, generator=g)
    y = torch.arange(32) % 10
    x = protos[y] + 0.5 * torch.randn(32, 3, 16, 16, generator=g)
    t = topo(MPL, [IMG, (8,), (8, 3, 16, 16)], seed=1)
    from archdsl.topology.train import train
    hist = train(t, 40, lr=0.03, data=[x, y, x])
    assert set(hist[0].losses) == {"student_step", "teacher_step"}
    with torch.no_grad():
        final = F.cross_entropy(t.nets["student_net"](x), y).item()
    t0 = topo(MPL, [IMG, (8,), (8, 3, 16, 16)], seed=1)
    with torch.no_grad():
        first = F.cross_entropy(t0.nets["student_net"](x), y).item()
    assert final < 0.85 * first, (first, final)
