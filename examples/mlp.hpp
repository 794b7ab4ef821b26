// A small multi-layer perceptron in float32 over pthio tensors, with Eigen doing the arithmetic:
// Linear -> ReLU -> ... -> Linear, the same computation as a torch model built from nn.Linear
// layers and torch.relu. Shared by examples/train_resume.cpp and examples/infer.cpp.
//
// Every parameter is a contiguous pthio::tensor owned by the model. named_parameters() returns a
// pthio::state_dict whose tensors share storage with the model (a tensor is a handle), so
// pthio::load_state_dict(params, checkpoint) writes straight into the model, and saving
// named_parameters() saves its current values. Keys are torch's: "<layer name>.weight" ([out, in])
// and "<layer name>.bias" ([out]), in the order torch's model.parameters() yields them.
//
// Also here: cross-entropy (torch.nn.functional.cross_entropy, mean over the batch) with its
// gradient, and Adam as torch.optim.Adam(foreach=False) computes it in float32
// (torch/optim/adam.py, _single_tensor_adam), with its state in torch's optimizer layout.
#pragma once

#include <Eigen/Core>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "pthio/eigen.hpp"
#include "pthio/pthio.hpp"

namespace mlp {

using matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// torch.nn.Linear: y = x W^T + b.
struct linear {
  std::string name;      // "fc1", "net.0", ...
  pthio::tensor weight;  // float32 [out, in]
  pthio::tensor bias;    // float32 [out]

  linear(std::string n, std::int64_t in, std::int64_t out)
      : name(std::move(n)),
        weight(pthio::tensor::zeros(pthio::dtype::float32, {out, in})),
        bias(pthio::tensor::zeros(pthio::dtype::float32, {out})) {}

  std::int64_t in_features() const { return weight.size(1); }
  std::int64_t out_features() const { return weight.size(0); }

  matrix forward(const matrix& x) const {
    matrix y = x * pthio::map_matrix<float>(weight).transpose();
    y.rowwise() += pthio::map_vector<float>(bias).transpose();
    return y;
  }
};

// The activations a training step keeps for backward: inputs[k] is what layer k saw.
struct activations {
  std::vector<matrix> inputs;
};

class model {
 public:
  // sizes = {in, hidden..., out}; names = one per Linear layer.
  model(const std::vector<std::int64_t>& sizes, const std::vector<std::string>& names) {
    if (sizes.size() < 2 || names.size() + 1 != sizes.size())
      throw pthio::error(pthio::errc::invalid_argument, "mlp::model: need one name per layer");
    for (std::size_t k = 0; k + 1 < sizes.size(); ++k)
      layers.emplace_back(names[k], sizes[k], sizes[k + 1]);
  }

  std::vector<linear> layers;

  // Parameters by torch's names, sharing storage with the model.
  pthio::state_dict named_parameters() const {
    pthio::state_dict sd;
    for (const auto& l : layers) {
      sd.set(l.name + ".weight", l.weight);
      sd.set(l.name + ".bias", l.bias);
    }
    return sd;
  }

  // The `_metadata` torch attaches to model.state_dict(): {"": {"version": 1}, "<layer>": ...}
  // for the root module and each submodule (the layers and the containers holding them).
  pthio::value torch_metadata() const {
    pthio::value meta = pthio::value::make_ordered_dict();
    auto version = [] {
      pthio::value v = pthio::value::make_dict();
      v.as_dict().set("version", pthio::value(1));
      return v;
    };
    meta.as_dict().set("", version());
    for (const auto& l : layers) {
      // Containers first ("net" before "net.0"), each once.
      for (std::size_t dot = l.name.find('.'); dot != std::string::npos;
           dot = l.name.find('.', dot + 1)) {
        std::string container = l.name.substr(0, dot);
        if (!meta.as_dict().get(std::string_view(container)))
          meta.as_dict().set(container, version());
      }
      meta.as_dict().set(l.name, version());
    }
    return meta;
  }

  // What torch's model.state_dict() holds: the parameters as plain tensors (requires_grad False),
  // sharing storage with the model, with `_metadata`.
  pthio::state_dict state_dict() const {
    pthio::state_dict sd = named_parameters();
    sd.metadata = torch_metadata();
    return sd;
  }

  // Logits for a batch (rows are samples).
  matrix forward(const matrix& x) const {
    activations unused;
    return forward(x, unused);
  }

  matrix forward(const matrix& x, activations& acts) const {
    acts.inputs.clear();
    matrix h = x;
    for (std::size_t k = 0; k < layers.size(); ++k) {
      acts.inputs.push_back(h);
      h = layers[k].forward(h);
      if (k + 1 < layers.size()) h = h.cwiseMax(0.0f);  // torch.relu
    }
    return h;
  }

  // Gradients of the loss for every parameter, in named_parameters() order, given d loss / d
  // logits.
  std::vector<pthio::tensor> backward(const activations& acts, const matrix& dlogits) const {
    std::vector<pthio::tensor> grads(2 * layers.size());
    matrix dy = dlogits;
    for (std::size_t k = layers.size(); k-- > 0;) {
      const linear& l = layers[k];
      const matrix& x = acts.inputs[k];
      pthio::tensor gw = pthio::tensor::zeros(pthio::dtype::float32, l.weight.shape());
      pthio::tensor gb = pthio::tensor::zeros(pthio::dtype::float32, l.bias.shape());
      pthio::map_matrix<float>(gw) = dy.transpose() * x;              // dW = dY^T X
      pthio::map_vector<float>(gb) = dy.colwise().sum().transpose();  // db = sum over the batch
      grads[2 * k] = gw;
      grads[2 * k + 1] = gb;
      if (k == 0) break;
      matrix dx = dy * pthio::map_matrix<float>(l.weight);  // dX = dY W
      // ReLU backward: x is the ReLU's output, zero where the input was <= 0.
      dy = (x.array() > 0.0f).select(dx, 0.0f);
    }
    return grads;
  }
};

// torch.nn.functional.cross_entropy(logits, labels) with reduction='mean', as torch computes it
// (log_softmax, then nll_loss). When `dlogits` is given it receives d loss / d logits.
inline float cross_entropy(const matrix& logits, const std::vector<std::int64_t>& labels,
                           matrix* dlogits = nullptr) {
  const Eigen::Index n = logits.rows();
  matrix logp(n, logits.cols());
  for (Eigen::Index i = 0; i < n; ++i) {
    float mx = logits.row(i).maxCoeff();
    float sum = (logits.row(i).array() - mx).exp().sum();
    logp.row(i) = logits.row(i).array() - mx - std::log(sum);
  }
  float total = 0;
  for (Eigen::Index i = 0; i < n; ++i) total += -logp(i, labels[static_cast<std::size_t>(i)]);
  float loss = total / static_cast<float>(n);
  if (dlogits) {
    // nll_loss backward: -1/n at each label; log_softmax backward: g - exp(logp) * sum(g).
    float g = -1.0f / static_cast<float>(n);
    *dlogits = -(logp.array().exp() * g);
    for (Eigen::Index i = 0; i < n; ++i) (*dlogits)(i, labels[static_cast<std::size_t>(i)]) += g;
  }
  return loss;
}

// torch.optim.Adam(params, lr, betas, eps, weight_decay, foreach=False) for float32 parameters.
// State per parameter, as torch keeps it: "step" (a float32 0-dim tensor), "exp_avg",
// "exp_avg_sq".
class adam {
 public:
  adam(std::vector<pthio::tensor> params, const pthio::adam_options& o)
      : params_(std::move(params)), opts_(o) {
    if (o.amsgrad || o.decoupled)
      throw pthio::error(pthio::errc::unsupported, "mlp::adam: no amsgrad or AdamW here");
    for (const auto& p : params_) {
      step_.push_back(pthio::tensor::zeros(pthio::dtype::float32, {}));
      exp_avg_.push_back(pthio::tensor::zeros(pthio::dtype::float32, p.shape()));
      exp_avg_sq_.push_back(pthio::tensor::zeros(pthio::dtype::float32, p.shape()));
    }
  }

  const pthio::adam_options& options() const { return opts_; }

  void step(const std::vector<pthio::tensor>& grads) {
    const auto beta1 = static_cast<float>(opts_.beta1), beta2 = static_cast<float>(opts_.beta2);
    const auto one_minus_beta1 = static_cast<float>(1 - opts_.beta1);
    const auto one_minus_beta2 = static_cast<float>(1 - opts_.beta2);
    const auto weight_decay = static_cast<float>(opts_.weight_decay);
    const auto eps = static_cast<float>(opts_.eps);
    for (std::size_t i = 0; i < params_.size(); ++i) {
      float* p = params_[i].data<float>();
      const float* g = grads[i].data<float>();
      float* m = exp_avg_[i].data<float>();
      float* v = exp_avg_sq_[i].data<float>();
      float& step_t = *step_[i].data<float>();
      step_t += 1;  // step_t += 1 on a float32 tensor
      // Python floats from here: step = step_t.item().
      const double step = step_t;
      const double bias_correction1 = 1 - std::pow(opts_.beta1, step);
      const double bias_correction2 = 1 - std::pow(opts_.beta2, step);
      const double step_size = opts_.lr / bias_correction1;
      const double bias_correction2_sqrt = std::sqrt(bias_correction2);
      const auto neg_step_size = static_cast<float>(-step_size);
      const auto bc2_sqrt = static_cast<float>(bias_correction2_sqrt);
      for (std::int64_t j = 0; j < params_[i].numel(); ++j) {
        float grad = g[j];
        if (opts_.weight_decay != 0)
          grad = grad + weight_decay * p[j];           // grad.add(param, alpha=wd)
        m[j] = m[j] * beta1 + one_minus_beta1 * grad;  // exp_avg.mul_(b1).add_(g, alpha=1-b1)
        v[j] = v[j] * beta2 +
               one_minus_beta2 * grad * grad;            // exp_avg_sq.mul_(b2).addcmul_(g, g, 1-b2)
        float denom = std::sqrt(v[j]) / bc2_sqrt + eps;  // (sqrt(v) / bc2_sqrt).add_(eps)
        p[j] = p[j] + neg_step_size * m[j] / denom;      // param.addcdiv_(m, denom, -step_size)
      }
    }
  }

  // torch's optimizer.state_dict(): state for every parameter that has taken a step, and one
  // param group. Tensors are copies (the optimizer keeps working on its own).
  pthio::value state_value() const {
    pthio::optimizer_state o;
    for (std::size_t i = 0; i < params_.size(); ++i) {
      if (step_[i].item<float>() == 0) continue;  // torch creates the state at the first step
      o.state[static_cast<std::int64_t>(i)] = {
          {"step", pthio::value(step_[i].clone())},
          {"exp_avg", pthio::value(exp_avg_[i].clone())},
          {"exp_avg_sq", pthio::value(exp_avg_sq_[i].clone())}};
    }
    auto group = pthio::adam_param_group(opts_, static_cast<std::int64_t>(params_.size()));
    for (auto& [name, val] : group)
      if (name == "foreach")
        val = pthio::value(false);  // as written by torch.optim.Adam(foreach=False)
    o.param_groups.push_back(std::move(group));
    return o.to_value();
  }

  // torch's optimizer.load_state_dict(): the hyperparameters of the saved group and each
  // parameter's state. Throws pthio::error(mismatch) when the state does not fit the parameters.
  void load_state_value(const pthio::value& v) {
    pthio::optimizer_state o = pthio::optimizer_state::from_value(v);
    if (o.param_groups.size() != 1)
      throw pthio::error(pthio::errc::mismatch, "expected one param group, the checkpoint has " +
                                                    std::to_string(o.param_groups.size()));
    const pthio::value* params = o.group_field(0, "params");
    if (!params || params->items().size() != params_.size())
      throw pthio::error(pthio::errc::mismatch, "the saved param group does not hold " +
                                                    std::to_string(params_.size()) + " parameters");
    auto field = [&](std::string_view name) -> const pthio::value& {
      const pthio::value* f = o.group_field(0, name);
      if (!f)
        throw pthio::error(pthio::errc::mismatch,
                           "the saved param group has no '" + std::string(name) + "'");
      return *f;
    };
    pthio::adam_options opts = opts_;
    opts.lr = field("lr").as_float();
    opts.beta1 = field("betas").at(0).as_float();
    opts.beta2 = field("betas").at(1).as_float();
    opts.eps = field("eps").as_float();
    opts.weight_decay = field("weight_decay").as_float();
    if (const pthio::value* a = o.group_field(0, "amsgrad"); a && a->as_bool())
      throw pthio::error(pthio::errc::unsupported, "the checkpoint's Adam uses amsgrad");
    // The saved group's i-th parameter index names the state of our i-th parameter.
    std::vector<pthio::tensor> step, exp_avg, exp_avg_sq;
    for (std::size_t i = 0; i < params_.size(); ++i) {
      std::int64_t index = params->items()[i].as_int();
      if (!o.state.count(index)) {  // no step taken yet for this parameter
        step.push_back(pthio::tensor::zeros(pthio::dtype::float32, {}));
        exp_avg.push_back(pthio::tensor::zeros(pthio::dtype::float32, params_[i].shape()));
        exp_avg_sq.push_back(pthio::tensor::zeros(pthio::dtype::float32, params_[i].shape()));
        continue;
      }
      // "step" is a float32 tensor since torch 1.12, a Python number before.
      pthio::tensor s = pthio::tensor::zeros(pthio::dtype::float32, {});
      for (const auto& [name, val] : o.state.at(index))
        if (name == "step") {
          if (val.is_tensor())
            s.copy_from(val.as_tensor().reshape({}));
          else
            *s.data<float>() = static_cast<float>(val.as_float());
        }
      step.push_back(s);
      using slot = std::pair<const char*, std::vector<pthio::tensor>*>;
      for (auto [name, out] : {slot{"exp_avg", &exp_avg}, slot{"exp_avg_sq", &exp_avg_sq}}) {
        const pthio::tensor& src = o.tensor_at(index, name);
        if (src.shape() != params_[i].shape())
          throw pthio::error(pthio::errc::mismatch, std::string(name) + " of parameter " +
                                                        std::to_string(index) + " has shape " +
                                                        pthio::shape_string(src.shape()));
        pthio::tensor t = pthio::tensor::zeros(pthio::dtype::float32, params_[i].shape());
        t.copy_from(src);  // converts dtype when needed, as torch casts state to the parameter's
        out->push_back(t);
      }
    }
    opts_ = opts;
    step_ = std::move(step);
    exp_avg_ = std::move(exp_avg);
    exp_avg_sq_ = std::move(exp_avg_sq);
  }

 private:
  std::vector<pthio::tensor> params_;
  pthio::adam_options opts_;
  std::vector<pthio::tensor> step_, exp_avg_, exp_avg_sq_;
};

}  // namespace mlp
