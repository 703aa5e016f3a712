// bptt plot: the loss curves of training runs (train_loss and val_loss against step or elapsed
// seconds, from the CSVs that `bptt train --metrics` writes), drawn by gnuplot into a PNG or SVG
// file: one run's two curves, or several runs' side by side (each labelled by its file name).
//
// The metrics file is read and checked here (each bad field is reported with its line and
// column); gnuplot gets a generated script on a temporary file, with the points inline as
// datablocks, and draws into "<out>.tmp-<pid>", which is renamed into place only on success.
#include <fcntl.h>
#include <unistd.h>

#include <fmt/core.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "bptt/data.hpp"
#include "bptt/error.hpp"
#include "bptt/io.hpp"
#include "io/temp_files.hpp"
#include "gnuplot.hpp"
#include "verbs.hpp"


namespace bptt::cli {

namespace {

namespace fs = std::filesystem;

struct PlotOptions {
  std::vector<std::string> metrics;
  std::string out, title, x = "step";
  bool log_y = false;  // a logarithmic loss axis (values <= 0 left out)
};

struct Curves {
  std::vector<std::pair<double, double>> train, val;  // (step, loss)
};

// A number of the metrics file; "nan"/"inf" are accepted (a diverged run writes them) and
// skipped when drawing.
bool parse_number(const std::string& s, double& v) {
  const char* end = s.data() + s.size();
  auto [p, ec] = std::from_chars(s.data(), end, v);
  return ec == std::errc() && p == end;
}

std::vector<std::string> split(const std::string& line) {
  std::vector<std::string> f;
  std::stringstream ss(line);
  for (std::string x; std::getline(ss, x, ',');) f.push_back(x);
  if (!line.empty() && line.back() == ',') f.emplace_back();
  if (line.empty()) f.emplace_back();
  return f;
}

// Reads the x column (step or elapsed_s), train_loss and val_loss (empty where not evaluated)
// of every row.
Curves read_metrics(const std::string& path, const std::string& x_column) {
  std::error_code ec;
  if (!fs::exists(path, ec))
    throw Error(ErrorKind::io, path, "no such file", "give the file of `bptt train --metrics`");
  if (fs::is_directory(path, ec))
    throw Error(ErrorKind::io, path, "is a directory, not a metrics file");
  const std::string text = data::read_file_bytes(path);
  if (text.empty())
    throw Error(ErrorKind::format, path, "empty file",
                "give the CSV that `bptt train --metrics` wrote");

  std::vector<std::string> lines;
  std::stringstream ss(text);
  for (std::string l; std::getline(ss, l);) {
    if (!l.empty() && l.back() == '\r') l.pop_back();
    lines.push_back(l);
  }
  while (!lines.empty() && lines.back().empty()) lines.pop_back();
  if (lines.empty())
    throw Error(ErrorKind::format, path, "no header line",
                "give the CSV that `bptt train --metrics` wrote");

  const std::vector<std::string> header = split(lines[0]);
  auto column = [&](const char* name) {
    auto it = std::find(header.begin(), header.end(), name);
    if (it == header.end())
      throw Error(ErrorKind::format, path + ":1",
                  fmt::format("the header lacks the column '{}'", name),
                  "expected step,elapsed_s,train_loss,val_loss,lr,grad_norm,throughput");
    return std::size_t(it - header.begin());
  };
  const std::size_t c_step = column(x_column.c_str()), c_train = column("train_loss"),
                    c_val = column("val_loss");
  if (lines.size() < 2)
    throw Error(ErrorKind::format, path, "no rows after the header",
                "train for longer or log more often");

  Curves curves;
  for (std::size_t i = 1; i < lines.size(); ++i) {
    const std::string where = fmt::format("{}:{}", path, i + 1);
    const std::vector<std::string> f = split(lines[i]);
    if (f.size() != header.size())
      throw Error(ErrorKind::shape, where,
                  fmt::format("{} fields, but the header has {}", f.size(), header.size()));
    auto number = [&](std::size_t c, bool may_be_empty, double& v) {
      if (f[c].empty()) {
        if (may_be_empty) return false;
        throw Error(ErrorKind::format, fmt::format("{}: {} (column {})", where, header[c], c + 1),
                    "missing value");
      }
      if (!parse_number(f[c], v))
        throw Error(ErrorKind::format, fmt::format("{}: {} (column {})", where, header[c], c + 1),
                    fmt::format("'{}' is not a number", data::printable(f[c], 40)));
      return true;
    };
    double step = 0, loss = 0;
    number(c_step, false, step);
    if (!std::isfinite(step)) throw Error(ErrorKind::value, where + ": " + x_column, "is not finite");
    if (number(c_train, false, loss) && std::isfinite(loss)) curves.train.emplace_back(step, loss);
    if (number(c_val, true, loss) && std::isfinite(loss)) curves.val.emplace_back(step, loss);
  }
  return curves;
}

// names: each run's label (its file's name); one run draws as before, several runs draw each
// run's validation curve in a colour of its own with its training curve thin beside it.
std::string script(const std::vector<Curves>& runs, const std::vector<std::string>& names,
                   const std::string& xlabel, const std::string& ext, const std::string& output,
                   const std::string& title, bool log_y) {
  std::string s;
  if (ext == ".png")
    s += "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) { set terminal pngcairo size 900,540 "
         "enhanced font ',10' } else { set terminal png size 900,540 }\n";
  else
    s += "set terminal svg size 900,540 dynamic enhanced font 'sans,10'\n";
  s += "set output " + quoted(output) + "\n";
  s += "set title " + quoted(title) + " noenhanced\n";
  s += "set xlabel " + quoted(xlabel) + "\nset ylabel 'loss'\nset grid\nset key top right\n";
  if (log_y) s += "set logscale y\nset format y '%g'\nset grid mytics\n";
  auto block = [&](const std::string& name, const std::vector<std::pair<double, double>>& pts) {
    s += fmt::format("${} << EOD\n", name);
    for (const auto& [x, y] : pts) s += fmt::format("{:.17g} {:.17g}\n", x, y);
    s += "EOD\n";
  };
  std::vector<std::string> plots;
  static const char* kColours[] = {"#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd",
                                   "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const Curves& c = runs[i];
    block(fmt::format("train{}", i), c.train);
    block(fmt::format("val{}", i), c.val);
    const char* train_style = c.train.size() < 50 ? "linespoints pt 7 ps 0.6" : "lines";
    if (runs.size() == 1) {
      if (!c.train.empty())
        plots.push_back(fmt::format(
            "$train0 using 1:2 with {} lw 1.5 lc rgb '#1f77b4' title 'train'", train_style));
      if (!c.val.empty())
        plots.push_back("$val0 using 1:2 with linespoints pt 7 ps 0.8 lw 1.5 lc rgb '#d62728' "
                        "title 'validation'");
      continue;
    }
    const char* colour = kColours[i % (sizeof kColours / sizeof kColours[0])];
    if (!c.val.empty())
      plots.push_back(fmt::format("$val{} using 1:2 with linespoints pt 7 ps 0.7 lw 2 lc rgb '{}' "
                                  "title {} noenhanced",
                                  i, colour, quoted(names[i] + " validation")));
    if (!c.train.empty())
      plots.push_back(fmt::format("$train{} using 1:2 with lines lw 0.8 dt 2 lc rgb '{}' title {} "
                                  "noenhanced",
                                  i, colour, quoted(names[i] + " train")));
  }
  s += "plot ";
  for (std::size_t i = 0; i < plots.size(); ++i) s += (i ? ", " : "") + plots[i];
  s += "\nset output\n";
  return s;
}

// Removes a file when it goes out of scope, unless released.
struct TempFile {
  std::string path;
  ~TempFile() {
    if (!path.empty()) ::unlink(path.c_str());
  }
};

void run_plot(const PlotOptions& o) {
  std::string ext = fs::path(o.out).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  if (ext != ".png" && ext != ".svg")
    throw Error(ErrorKind::usage, o.out,
                ext.empty() ? "no extension" : "unknown extension '" + ext + "'",
                "name the picture FILE.png or FILE.svg");
  if (o.x != "step" && o.x != "elapsed")
    throw Error(ErrorKind::usage, "--x", "'" + o.x + "' is not step or elapsed",
                "step (the default) or elapsed (seconds, to compare runs of different speeds)");
  std::vector<Curves> runs;
  std::vector<std::string> names;
  std::size_t train_points = 0, val_points = 0, left_out = 0;
  for (const std::string& m : o.metrics) {
    runs.push_back(read_metrics(m, o.x == "step" ? "step" : "elapsed_s"));
    if (o.log_y)  // a logarithmic axis has no place for a loss <= 0 (a regression's can reach 0)
      for (auto* pts : {&runs.back().train, &runs.back().val})
        left_out += std::size_t(std::erase_if(*pts, [](const auto& p) { return !(p.second > 0); }));
    if (runs.back().train.empty() && runs.back().val.empty())
      throw Error(ErrorKind::value, m,
                  o.log_y ? "no finite loss values above 0 to plot"
                          : "no finite loss values to plot",
                  o.log_y ? "draw it without --log-y" : "");
    names.push_back(fs::path(m).stem().string());
    train_points += runs.back().train.size();
    val_points += runs.back().val.size();
  }

  // The picture is drawn into a temporary file beside the output, renamed on success.
  TempFile tmp_out{o.out + ".tmp-" + std::to_string(::getpid())};
  {
    std::ofstream probe(tmp_out.path, std::ios::binary | std::ios::trunc);
    if (!probe) {
      tmp_out.path.clear();
      throw Error(ErrorKind::io, o.out, "cannot write here",
                  "check that the directory exists and is writable");
    }
  }
  std::string script_template = (fs::temp_directory_path() / "bptt-plot-XXXXXX").string();
  const int fd = ::mkstemp(script_template.data());
  if (fd < 0)
    throw Error(ErrorKind::io, "plot",
                fmt::format("cannot create a temporary script: {}", std::strerror(errno)));
  TempFile tmp_script{script_template};
  const std::string title =
      !o.title.empty()        ? o.title
      : o.metrics.size() == 1 ? "loss: " + fs::path(o.metrics[0]).filename().string()
                              : "loss";
  const std::string text = script(runs, names, o.x == "step" ? "step" : "elapsed seconds", ext,
                                  tmp_out.path, title, o.log_y);
  const bool wrote = ::write(fd, text.data(), text.size()) == ssize_t(text.size());
  ::close(fd);
  if (!wrote) throw Error(ErrorKind::io, tmp_script.path, "cannot write the gnuplot script");

  std::string output;
  const int status = run_gnuplot(tmp_script.path, output);
  std::error_code ec;
  if (status != 0)
    throw Error(ErrorKind::io, "gnuplot",
                fmt::format("failed (exit {}): {}", status, gnuplot_problem(output)));
  if (fs::file_size(tmp_out.path, ec) == 0 || ec)
    throw Error(ErrorKind::io, "gnuplot", "wrote no picture: " + gnuplot_problem(output));
  fs::rename(tmp_out.path, o.out, ec);
  if (ec)
    throw Error(ErrorKind::io, o.out, "cannot rename the picture into place: " + ec.message());
  tmp_out.path.clear();
  remove_stale_temporaries(o.out);
  fmt::print("plot written to {} ({} training points, {} validation points{}{})\n", o.out,
             train_points, val_points,
             runs.size() > 1 ? fmt::format(", {} runs", runs.size()) : std::string(),
             left_out ? fmt::format("; {} losses <= 0 left out of the logarithmic axis", left_out)
                      : std::string());
}

}  // namespace

void add_plot(CLI::App& app, Runner& run) {
  auto o = std::make_shared<PlotOptions>();
  CLI::App* cmd = app.add_subcommand(
      "plot",
      "Draw the loss curves (training and validation loss against step or time) of training runs\n"
      "from the CSVs written by `bptt train --metrics`, with gnuplot (apt-get install\n"
      "gnuplot-nox): one run's two curves, or several runs side by side.");
  cmd->add_option("--metrics", o->metrics,
                  "CSV written by `bptt train --metrics` (several: one curve pair each, labelled\n"
                  "by file name)")
      ->required();
  cmd->add_option("--x", o->x, "The x axis: step (default) or elapsed (seconds)");
  cmd->add_option("--out", o->out, "Picture to write: FILE.png or FILE.svg")->required();
  cmd->add_option("--title", o->title, "Title (default: the metrics file's name)");
  cmd->add_flag("--log-y", o->log_y,
                "A logarithmic loss axis (losses <= 0 are left out and counted in the message)");
  cmd->callback([o, &run] { run = [o] { run_plot(*o); }; });
}

}  // namespace bptt::cli
