// POST /v1/embeddings: the input stage on `input` (each string a user
// message; token ids reach no stage and are recorded so), a block → 409, a
// redaction rewrites the strings. The answer is vectors: no output stage.
#include "gateway/internal/surface.h"
#include "gateway/internal/util.h"

namespace kt::gateway {

namespace {

class Embeddings : public Surface {
 public:
  std::string_view name() const override { return "embeddings"; }
  std::string_view upstream_path() const override { return "/embeddings"; }
  bool has_output() const override { return false; }

  std::string Read(const Json& body, SurfaceRequest* out, Exchange* x) const override {
    if (!body.is_object()) return "the request body must be a JSON object";
    const Json* model = FieldOf(body, "model");
    if (model == nullptr || !model->is_string() || model->get_ref<const std::string&>().empty()) {
      return "`model` must be a non-empty string";
    }
    out->model = model->get<std::string>();
    out->canonical = {{"model", out->model}, {"messages", Json::array()}};
    if (body.contains("user")) out->canonical["user"] = body["user"];
    const Json* input = FieldOf(body, "input");
    if (input == nullptr) return "`input` is required";
    return ReadTexts(*input, "input", out, x);
  }

  std::string ToChat(const Json&, Json*) const override {
    return "embeddings have no chat-completions form";
  }

  std::string AnswerOf(const Json&, bool, Json* answer) const override {
    const Json* data = FieldOf(*answer, "data");
    if (data == nullptr || !data->is_array()) return "`data` must be a list of embeddings";
    return "";
  }

  void View(Json*, AnswerView*) const override {}

  std::unique_ptr<SurfaceRelay> Relay(StreamJudge*, const Json&, bool) const override {
    return nullptr;  // embeddings do not stream (Read never sets `stream`)
  }
};

}  // namespace

const Surface& EmbeddingsSurface() {
  static const Embeddings surface;
  return surface;
}

}  // namespace kt::gateway
