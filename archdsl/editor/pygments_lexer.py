"""A Pygments lexer for `.arch` files: `pygmentize -l archdsl net.arch`, Sphinx/MkDocs code
blocks written ```arch, and anything else that highlights through Pygments.

Registered as the `pygments.lexers` entry point `archdsl` (see pyproject.toml), so after
`pip install archdsl` Pygments finds it by name (`archdsl`, `arch`) and by file name (`*.arch`).

Token categories: keywords (`Keyword`, declarations as `Keyword.Declaration`, imports as
`Keyword.Namespace`, `true`/`false`/`none` as `Keyword.Constant`, `and`/`or`/`not` as
`Operator.Word`), op and builtin names (`Name.Builtin`), the name a block/network/topology,
variant or let declares (`Name.Class` / `Name.Function` / `Name.Constant`), stage labels
(`Name.Label`: `-> conv1:` and `[conv1: …, pool: …]`, templates `layer{i + 1}:` included),
strings, numbers, comments and operators.

The name lists are static, so importing the lexer imports nothing of archdsl (nor torch);
tests/test_editor.py checks them against the registries (`archdsl.ops.REGISTRY`,
`archdsl.semantics.builtins.BUILTINS`, the topology builtins and update actions).
"""
from __future__ import annotations

from pygments.lexer import RegexLexer, bygroups, default, include, words
from pygments.token import (Comment, Keyword, Name, Number, Operator, Punctuation, String,
                            Whitespace)

__all__ = ["ArchLexer", "KEYWORDS", "OPS", "BUILTINS", "TOPOLOGY_BUILTINS"]

# Every keyword of archdsl/syntax/grammar.lark (the NAME exclusion plus `block`/`network`).
KEYWORDS = (
    "block", "network", "topology", "in", "out", "if", "elif", "else", "for", "and", "or",
    "not", "true", "false", "none", "repeat", "param", "buffer", "let", "variant", "import",
    "from", "as", "reference", "net", "state", "phase", "log", "after", "init", "assert",
    "checkpoint",
)

# archdsl.ops.REGISTRY
OPS = (
    'adain', 'adaptive_avgpool', 'adaptive_maxpool', 'add', 'affine_grid_sample', 'affine_head',
    'anchor_grid', 'avgpool', 'batch_norm', 'beit_rel_pos_bias', 'block_mask', 'blur_pool',
    'bn', 'cat', 'channel_shuffle', 'chunk', 'clip_loss', 'color_jitter', 'cond_batch_norm',
    'cond_bn', 'conv', 'conv1d', 'conv3d', 'conv_transpose', 'conv_with', 'cpc_nce',
    'cross_entropy', 'deform_conv', 'dino_loss', 'dirac_conv', 'distill_kl', 'div', 'drop_path',
    'dropout', 'dynamic_conv', 'embedding', 'eot_pool', 'eq_conv', 'eq_linear', 'expand',
    'expand_batch', 'fill_masked', 'flatten', 'focal_loss', 'fourier_unit', 'gamma_act',
    'gan_loss', 'gaussian_blur', 'gelu', 'getitem', 'global_avgpool', 'global_maxpool', 'gn',
    'grayscale', 'group_norm', 'gru', 'hardsigmoid', 'hardswish', 'hflip', 'history_pool',
    'identity', 'info_nce', 'interpolate', 'inva_spread', 'kl_gauss', 'l1_loss', 'l2_normalize',
    'layer_norm', 'layer_norm2d', 'layer_scale', 'leaky_relu', 'level_conv', 'linear', 'ln',
    'ln2d', 'lookup', 'mae_loss', 'mask_partition', 'masked_token_ce', 'matmul', 'maxpool',
    'mbstd', 'mean', 'merge_heads', 'minibatch_std', 'mixup', 'mod_conv', 'mse_loss', 'mul',
    'nce_bank', 'nce_draw', 'neg_cosine', 'nmf2d', 'noise', 'noise_injection', 'normalize',
    'nt_xent', 'pad', 'patch_merge', 'patchify', 'permute', 'pixel_norm', 'pixel_shuffle',
    'pixel_unshuffle', 'pow', 'prepend_token', 'pseudo_label', 'rand_class', 'randaugment',
    'randn', 'random_masking', 'random_resized_crop', 'reduce_sum', 'rel_pos_bias', 'relu',
    'relu6', 'reparam', 'reparameterize', 'reshape', 'restore_tokens', 'retina_loss',
    'rms_norm', 'rms_norm2d', 'roll', 'same_pad', 'scaled_act', 'scaled_std_conv', 'sdpa',
    'shift_window_mask', 'sigmoid', 'sigmoid_focal_loss', 'silu', 'simple_norm',
    'simple_norm2d', 'sincos_pos_embed', 'sinusoid_pos', 'sn_conv', 'sn_embedding', 'sn_linear',
    'softmax', 'solarize', 'split', 'split_heads', 'stack', 'stop_grad', 'style_mix', 'sub',
    'swav_loss', 'tanh', 'transpose', 'truncated_randn', 'unshuffle', 'upsample',
    'vector_quantize', 'vq', 'vq_ema', 'window_partition', 'window_reverse', 'wn_linear',
    'ws_conv',
)

# archdsl.semantics.builtins.BUILTINS
BUILTINS = (
    'abs', 'bool', 'ceil', 'constant', 'enumerate', 'exp', 'float', 'floor', 'int',
    'kaiming_normal', 'kaiming_uniform', 'len', 'list', 'log2', 'log_e', 'make_divisible',
    'max', 'min', 'normal', 'ones', 'orthogonal', 'per_stage', 'prod', 'range', 'reversed',
    'round', 'sorted', 'sqrt', 'str', 'sum', 'trunc_normal', 'tuple', 'uniform',
    'xavier_normal', 'xavier_uniform', 'zeros', 'zip',
)

# archdsl.semantics.topology.TOPOLOGY_BUILTINS and archdsl.ir.updates.ACTIONS
TOPOLOGY_BUILTINS = (
    'adam', 'adamw', 'bank_update', 'carry', 'center_update', 'clamp', 'constant_lr',
    'cosine_lr', 'cosine_schedule', 'ema', 'enqueue', 'frozen', 'grad_penalty', 'group',
    'l2_normalize_param', 'larc', 'lars', 'linear_decay_schedule', 'noam_lr', 'sgd',
    'shuffle_bn', 'step_schedule', 'store', 'warmup_schedule',
)

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
# grammar.lark's LABEL: `conv1:`, `layer{i + 1}:`, `b{i}_{j}:` (not `name::`, not `name:=`)
_LABEL = _IDENT + r"(?:\{[^{}\n]*\}[A-Za-z0-9_]*)*"
_LABEL_TAIL = r"([ \t]*)(:)(?![:=])"


class ArchLexer(RegexLexer):
    """The archdsl `.arch` spec language."""

    name = "archdsl"
    aliases = ["arch", "archdsl"]
    filenames = ["*.arch"]
    mimetypes = ["text/x-archdsl"]
    url = "https://github.com/archdsl/archdsl"

    tokens = {
        "root": [
            include("common"),
        ],
        # inside `( … )`: arguments and parameters (`dim: int = 8` is not a label)
        "paren": [
            (r"\)", Punctuation, "#pop"),
            include("common"),
        ],
        # inside `[ … ]`: each item may start with a label (`[conv: cl(64, 7), pool: maxpool(3)]`)
        "list": [
            (r"\]", Punctuation, "#pop"),
            (r",", Punctuation, "item"),
            include("common"),
        ],
        "item": [
            (r"[ \t\r\n]+", Whitespace),
            (r"#.*?$", Comment.Single),
            ("(" + _LABEL + ")" + _LABEL_TAIL, bygroups(Name.Label, Whitespace, Punctuation), "#pop"),
            default("#pop"),
        ],
        "common": [
            (r"[ \t\r\n]+", Whitespace),
            (r"#.*?$", Comment.Single),
            (r'"(?:[^"\\\n]|\\.)*"', String.Double),
            # a stage label after `->`
            (r"(->)(\s*)(" + _LABEL + ")" + _LABEL_TAIL,
             bygroups(Operator, Whitespace, Name.Label, Whitespace, Punctuation)),
            (r"->", Operator),
            # declarations
            (r"\b(block|network|topology)(\s+)(" + _IDENT + r")(?=\s*\()",
             bygroups(Keyword.Declaration, Whitespace, Name.Class)),
            (r"\b(variant)(\s+)(" + _IDENT + ")", bygroups(Keyword.Declaration, Whitespace, Name.Function)),
            (r"\b(let)(\s+)(" + _IDENT + ")", bygroups(Keyword.Declaration, Whitespace, Name.Constant)),
            (words(("block", "network", "topology", "variant", "let"), prefix=r"(?<![\w.])",
                   suffix=r"\b"), Keyword.Declaration),
            (words(("import", "from", "as"), prefix=r"(?<![\w.])", suffix=r"\b"), Keyword.Namespace),
            (words(("true", "false", "none"), prefix=r"(?<![\w.])", suffix=r"\b"), Keyword.Constant),
            (words(("and", "or", "not"), prefix=r"(?<![\w.])", suffix=r"\b"), Operator.Word),
            (words(tuple(k for k in KEYWORDS if k not in {
                "block", "network", "topology", "variant", "let", "import", "from", "as",
                "true", "false", "none", "and", "or", "not"}), prefix=r"(?<![\w.])", suffix=r"\b"),
             Keyword),
            (words(OPS + BUILTINS + TOPOLOGY_BUILTINS, prefix=r"(?<![\w.])", suffix=r"\b"),
             Name.Builtin),
            (_IDENT, Name),
            # numbers (grammar.lark's FLOAT, then INT)
            (r"(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|[0-9]+[eE][-+]?[0-9]+", Number.Float),
            (r"[0-9][0-9_]*", Number.Integer),
            (r"\.\.\.", Punctuation),          # `in x: [..., C]`
            (r"\*\*|//|==|!=|<=|>=|[-+*/%<>=?]", Operator),
            (r"\[", Punctuation, ("list", "item")),
            (r"\(", Punctuation, "paren"),
            (r"[\]){}.,:|]", Punctuation),   # `|` separates a choice type's strings
        ],
    }
