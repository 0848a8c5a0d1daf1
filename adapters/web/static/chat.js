/* bothub web chat: a dependency-free client for POST /api/chat (server-sent events). */
(function () {
  "use strict";

  /* ------------------------------------------------------------------------------------------
   * Markdown: a small, safe renderer. Every piece of text is HTML-escaped before it is placed in
   * the output; the only tags produced are the ones written below, and links are only made for
   * http, https and mailto URLs.
   * ---------------------------------------------------------------------------------------- */

  var ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
  var PH_OPEN = "\u0001";
  var PH_CLOSE = "\u0002";
  var PLACEHOLDER_RE = /\u0001(\d+)\u0002/g;
  var MAX_DEPTH = 6;

  var FENCE_RE = /^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)[^`]*$/;
  var HEADING_RE = /^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$/;
  var RULE_RE = /^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/;
  var QUOTE_RE = /^ {0,3}> ?(.*)$/;
  var LIST_RE = /^([ \t]*)([-*+]|\d{1,9}[.)])(?:[ \t]+(.*))?$/;
  var TABLE_SEP_RE = /^[ \t]*\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)+\|?[ \t]*$/;
  var BLANK_RE = /^[ \t]*$/;

  function escapeHtml(text) {
    return String(text).replace(/[&<>"']/g, function (c) { return ESCAPES[c]; });
  }

  function safeUrl(url) {
    var u = String(url).trim();
    if (/[\s\u0000-\u001f\u007f]/.test(u)) return null;
    if (/^https?:\/\/[^/?#\s]/i.test(u) || /^mailto:[^\s]+$/i.test(u)) return u;
    return null;
  }

  function linkHtml(href, labelHtml) {
    return '<a href="' + escapeHtml(href) + '" target="_blank" rel="noopener noreferrer">' +
      labelHtml + "</a>";
  }

  /** Bold, italic and strike-through on text that is already escaped. */
  function emphasis(s) {
    return s
      .replace(/\*\*\*(?=[^\s*])([\s\S]*?[^\s*])\*\*\*/g, "<strong><em>$1</em></strong>")
      .replace(/\*\*(?=\S)([\s\S]*?\S)\*\*/g, "<strong>$1</strong>")
      .replace(/(^|[^\w])__(?=\S)([\s\S]*?\S)__(?!\w)/g, "$1<strong>$2</strong>")
      .replace(/(^|[^*\w])\*(?=[^\s*])([^*]*?[^\s*])\*(?!\*)/g, "$1<em>$2</em>")
      .replace(/(^|[^\w])_(?=[^\s_])([^_]*?[^\s_])_(?!\w)/g, "$1<em>$2</em>")
      .replace(/~~(?=\S)([\s\S]*?\S)~~/g, "<del>$1</del>");
  }

  function splitTrailing(url) {
    var trail = "";
    for (;;) {
      var last = url.charAt(url.length - 1);
      if (/[.,;:!?*_~'"]/.test(last)) {
        trail = last + trail;
        url = url.slice(0, -1);
      } else if (last === ")" && (url.split("(").length < url.split(")").length)) {
        trail = last + trail;
        url = url.slice(0, -1);
      } else {
        return [url, trail];
      }
    }
  }

  /** One line (or a few joined lines) of inline markdown to HTML. */
  function inline(raw) {
    var stash = [];
    function keep(html) { return PH_OPEN + (stash.push(html) - 1) + PH_CLOSE; }
    var s = String(raw);

    // `code`: its content is taken literally.
    s = s.replace(/(`+)([^`]|[^`][\s\S]*?[^`])\1(?!`)/g, function (_, ticks, code) {
      var body = /^ [\s\S]* $/.test(code) && code.trim() ? code.slice(1, -1) : code;
      return keep("<code>" + escapeHtml(body) + "</code>");
    });

    // [label](url "title"): a link only for http, https and mailto; anything else stays text.
    s = s.replace(
      /\[([^\[\]]*(?:\[[^\[\]]*\][^\[\]]*)*)\]\([ \t]*<?((?:[^()\s<>]|\([^()\s<>]*\))+)>?(?:[ \t]+(?:"[^"]*"|'[^']*'))?[ \t]*\)/g,
      function (whole, label, url) {
        var href = safeUrl(url);
        if (!href || !label.trim()) return whole;
        return keep(linkHtml(href, emphasis(escapeHtml(label))));
      });

    // Bare http(s) URLs.
    s = s.replace(/\bhttps?:\/\/[^\s<>"'`\u0001\u0002]+/gi, function (match) {
      var parts = splitTrailing(match);
      var href = safeUrl(parts[0]);
      if (!href) return match;
      return keep(linkHtml(href, escapeHtml(parts[0]))) + parts[1];
    });

    s = emphasis(escapeHtml(s));
    for (var round = 0; round < 3 && s.indexOf(PH_OPEN) !== -1; round++) {
      s = s.replace(PLACEHOLDER_RE, function (_, n) { return stash[+n] || ""; });
    }
    return s;
  }

  function indentWidth(ws) {
    return ws.replace(/\t/g, "    ").length;
  }

  function splitRow(line) {
    var row = line.trim().replace(/^\|/, "").replace(/(^|[^\\])\|$/, "$1");
    return row.split(/(?<!\\)\|/).map(function (cell) { return cell.trim().replace(/\\\|/g, "|"); });
  }

  function renderTable(header, aligns, rows) {
    function cells(tag, values) {
      var html = "";
      for (var c = 0; c < header.length; c++) {
        var align = aligns[c] ? ' class="align-' + aligns[c] + '"' : "";
        html += "<" + tag + align + ">" + inline(values[c] || "") + "</" + tag + ">";
      }
      return "<tr>" + html + "</tr>";
    }
    var body = rows.map(function (r) { return cells("td", r); }).join("");
    return '<div class="md-table"><table><thead>' + cells("th", header) + "</thead>" +
      (body ? "<tbody>" + body + "</tbody>" : "") + "</table></div>";
  }

  function renderList(items, depth) {
    var html = "";
    var stack = [];
    items.forEach(function (item) {
      var tag = item.ordered ? "ol" : "ul";
      var start = item.ordered && item.number !== 1 ? ' start="' + item.number + '"' : "";
      while (stack.length && item.indent < stack[stack.length - 1].indent) {
        html += "</li></" + stack.pop().tag + ">";
      }
      var top = stack[stack.length - 1];
      if (!top || item.indent > top.indent) {
        html += "<" + tag + start + ">";
        stack.push({ indent: item.indent, tag: tag });
      } else if (top.tag !== tag) {
        html += "</li></" + top.tag + "><" + tag + start + ">";
        top.tag = tag;
      } else {
        html += "</li>";
      }
      var lines = item.lines;
      while (lines.length > 1 && lines[lines.length - 1] === "") lines.pop();
      var block = lines.some(function (l) { return l === "" || FENCE_RE.test(l); });
      html += "<li>" + (block ? blocks(lines.join("\n"), depth + 1)
        : lines.map(inline).join("<br>"));
    });
    while (stack.length) html += "</li></" + stack.pop().tag + ">";
    return html;
  }

  function blocks(src, depth) {
    var lines = src.split("\n");
    var out = [];
    var para = [];
    var i = 0;
    var m;

    function flush() {
      if (para.length) out.push("<p>" + para.map(inline).join("<br>") + "</p>");
      para = [];
    }

    if (depth > MAX_DEPTH) return "<p>" + lines.map(inline).join("<br>") + "</p>";

    while (i < lines.length) {
      var line = lines[i];

      if ((m = FENCE_RE.exec(line))) {
        flush();
        var fence = m[1];
        var lang = m[2];
        var code = [];
        var close = new RegExp("^ {0,3}" + (fence[0] === "`" ? "`" : "~") +
          "{" + fence.length + ",}[ \\t]*$");
        i++;
        while (i < lines.length && !close.test(lines[i])) code.push(lines[i++]);
        i++;
        out.push("<pre" + (lang ? ' data-lang="' + escapeHtml(lang) + '"' : "") + "><code>" +
          escapeHtml(code.join("\n")) + "</code></pre>");
        continue;
      }
      if (BLANK_RE.test(line)) {
        flush();
        i++;
        continue;
      }
      if ((m = HEADING_RE.exec(line))) {
        flush();
        var level = Math.min(m[1].length + 2, 6);  // the page's own title is the h1
        out.push("<h" + level + ">" + inline(m[2]) + "</h" + level + ">");
        i++;
        continue;
      }
      if (RULE_RE.test(line)) {
        flush();
        out.push("<hr>");
        i++;
        continue;
      }
      if (QUOTE_RE.test(line)) {
        flush();
        var quoted = [];
        while (i < lines.length && (m = QUOTE_RE.exec(lines[i]))) {
          quoted.push(m[1]);
          i++;
        }
        out.push("<blockquote>" + blocks(quoted.join("\n"), depth + 1) + "</blockquote>");
        continue;
      }
      if (line.indexOf("|") !== -1 && i + 1 < lines.length && TABLE_SEP_RE.test(lines[i + 1])) {
        var header = splitRow(line);
        var aligns = splitRow(lines[i + 1]).map(function (cell) {
          var left = cell.charAt(0) === ":";
          var right = cell.charAt(cell.length - 1) === ":";
          return left && right ? "center" : right ? "right" : left ? "left" : "";
        });
        if (aligns.length === header.length) {
          flush();
          i += 2;
          var rows = [];
          while (i < lines.length && !BLANK_RE.test(lines[i]) && lines[i].indexOf("|") !== -1) {
            rows.push(splitRow(lines[i++]));
          }
          out.push(renderTable(header, aligns, rows));
          continue;
        }
      }
      if ((m = LIST_RE.exec(line)) && !(para.length && m[3] === undefined)) {
        flush();
        var items = [];
        while (i < lines.length) {
          var current = lines[i];
          var item = LIST_RE.exec(current);
          if (item && !RULE_RE.test(current)) {
            items.push({
              indent: indentWidth(item[1]),
              ordered: /\d/.test(item[2]),
              number: parseInt(item[2], 10),
              lines: [item[3] || ""],
            });
            i++;
          } else if (BLANK_RE.test(current)) {
            var j = i + 1;
            while (j < lines.length && BLANK_RE.test(lines[j])) j++;
            if (j < lines.length && (LIST_RE.test(lines[j]) || /^[ \t]{2,}\S/.test(lines[j]))) {
              items[items.length - 1].lines.push("");
              i = j;
            } else {
              break;
            }
          } else if (/^[ \t]+\S/.test(current)) {
            items[items.length - 1].lines.push(current.trim());
            i++;
          } else {
            break;
          }
        }
        out.push(renderList(items, depth));
        continue;
      }
      para.push(line.trim());
      i++;
    }
    flush();
    return out.join("");
  }

  /** Markdown text to an HTML string in which all text is escaped. */
  function renderMarkdown(text) {
    var src = String(text == null ? "" : text)
      .replace(/\r\n?/g, "\n")
      .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/g, "");
    return blocks(src, 0);
  }

  window.bothubMarkdown = renderMarkdown;

  /* ------------------------------------------------------------------------------------------
   * The chat page.
   * ---------------------------------------------------------------------------------------- */

  var CONVERSATION_KEY = "bothub.conversationId";
  var TRANSCRIPT_KEY = "bothub.transcript";
  var MAX_TRANSCRIPT = 200;
  var NETWORK_ERROR = "Sorry, I couldn't reach the support assistant. Please check your " +
    "connection and try again.";
  var INTERRUPTED = "The connection was interrupted before the answer was complete. " +
    "Please try again.";
  var DUPLICATE = "This message had already been received. If you don't see its answer, " +
    "please ask again.";

  var storage = {
    get: function (key) {
      try { return window.sessionStorage.getItem(key); } catch (e) { return null; }
    },
    set: function (key, value) {
      try { window.sessionStorage.setItem(key, value); } catch (e) { /* storage unavailable */ }
    },
    remove: function (key) {
      try { window.sessionStorage.removeItem(key); } catch (e) { /* storage unavailable */ }
    },
  };

  function randomId() {
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) {
      return ("0" + b.toString(16)).slice(-2);
    }).join("");
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text != null) node.textContent = text;
    return node;
  }

  var SVG_NS = "http://www.w3.org/2000/svg";
  var BUBBLE_PATH = "M5 7.5A2.5 2.5 0 0 1 7.5 5h9A2.5 2.5 0 0 1 19 7.5v6a2.5 2.5 0 0 1-2.5 " +
    "2.5H11l-4 3.5V16h.5A2.5 2.5 0 0 1 5 13.5z";

  function avatarIcon() {
    var svg = document.createElementNS(SVG_NS, "svg");
    svg.setAttribute("viewBox", "3 3 18 18");
    svg.setAttribute("width", "16");
    svg.setAttribute("height", "16");
    svg.setAttribute("focusable", "false");
    var path = document.createElementNS(SVG_NS, "path");
    path.setAttribute("d", BUBBLE_PATH);
    path.setAttribute("fill", "currentColor");
    svg.appendChild(path);
    return svg;
  }

  function srOnly(text) {
    return el("span", "visually-hidden", text);
  }

  /** Reads `event: NAME\ndata: JSON\n\n` frames from a fetch response body. */
  async function readEvents(response, onEvent) {
    var reader = response.body.getReader();
    var decoder = new TextDecoder();
    var buffer = "";

    function dispatch(frame) {
      var name = "message";
      var data = [];
      frame.split("\n").forEach(function (line) {
        if (!line || line.charAt(0) === ":") return;
        var colon = line.indexOf(":");
        var field = colon === -1 ? line : line.slice(0, colon);
        var value = colon === -1 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") name = value;
        else if (field === "data") data.push(value);
      });
      if (!data.length) return;
      var payload;
      try { payload = JSON.parse(data.join("\n")); } catch (e) { return; }
      onEvent(name, payload || {});
    }

    for (;;) {
      var chunk = await reader.read();
      if (chunk.done) break;
      buffer += decoder.decode(chunk.value, { stream: true }).replace(/\r\n?/g, "\n");
      var end;
      while ((end = buffer.indexOf("\n\n")) !== -1) {
        dispatch(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
      }
    }
    buffer += decoder.decode();
    if (buffer.trim()) dispatch(buffer);
  }

  function start() {
    var scroller = document.getElementById("scroller");
    var log = document.getElementById("log");
    var welcome = document.getElementById("welcome");
    var form = document.getElementById("composer");
    var input = document.getElementById("input");
    var send = document.getElementById("send");
    var reset = document.getElementById("new-conversation");

    var conversationId = storage.get(CONVERSATION_KEY);
    var transcript = [];
    var busy = false;
    var controller = null;
    var stick = true;

    try { transcript = JSON.parse(storage.get(TRANSCRIPT_KEY) || "[]"); } catch (e) { /* */ }
    if (!Array.isArray(transcript)) transcript = [];

    function saveTranscript() {
      transcript = transcript.slice(-MAX_TRANSCRIPT);
      storage.set(TRANSCRIPT_KEY, JSON.stringify(transcript));
    }

    function nearBottom() {
      return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 64;
    }

    function scrollDown(force) {
      if (force) stick = true;
      if (stick) scroller.scrollTop = scroller.scrollHeight;
    }

    scroller.addEventListener("scroll", function () { stick = nearBottom(); }, { passive: true });

    function updateWelcome() {
      welcome.hidden = log.childElementCount > 0;
    }

    function setBusy(value) {
      busy = value;
      send.disabled = value;
      form.setAttribute("aria-busy", value ? "true" : "false");
    }

    function autosize() {
      input.style.height = "auto";
      input.style.height = Math.min(input.scrollHeight, 200) + "px";
    }

    function addUser(text) {
      var row = el("div", "msg msg-user");
      var bubble = el("div", "bubble");
      bubble.appendChild(srOnly("You said: "));
      bubble.appendChild(el("p", "msg-text", text));
      row.appendChild(bubble);
      log.appendChild(row);
      updateWelcome();
      return row;
    }

    /** An assistant message: a bubble that grows with the answer, then gets its final form. */
    function Answer() {
      this.text = "";
      this.mode = null;
      this.sources = [];
      this.error = false;
      this.complete = false;
      this.frame = 0;
      this.row = el("div", "msg msg-assistant");
      this.row.setAttribute("data-state", "pending");
      this.row.setAttribute("aria-busy", "true");
      var avatar = el("div", "avatar");
      avatar.setAttribute("aria-hidden", "true");
      avatar.appendChild(avatarIcon());
      this.bubble = el("div", "bubble");
      this.bubble.appendChild(srOnly("Assistant: "));
      this.body = el("div", "msg-body md");
      this.typing = el("div", "typing");
      this.typing.appendChild(srOnly("The assistant is typing"));
      for (var d = 0; d < 3; d++) this.typing.appendChild(el("span", "dot"));
      this.body.appendChild(this.typing);
      this.bubble.appendChild(this.body);
      this.row.appendChild(avatar);
      this.row.appendChild(this.bubble);
      log.appendChild(this.row);
      updateWelcome();
    }

    Answer.prototype.render = function () {
      var self = this;
      if (self.frame) return;
      self.frame = window.requestAnimationFrame(function () {
        self.frame = 0;
        self.paint();
      });
    };

    Answer.prototype.paint = function () {
      if (this.frame) {
        window.cancelAnimationFrame(this.frame);
        this.frame = 0;
      }
      // renderMarkdown escapes every piece of text it is given (see above).
      this.body.innerHTML = renderMarkdown(this.text);
      if (this.row.getAttribute("data-state") === "pending") {
        this.row.setAttribute("data-state", "streaming");
      }
      scrollDown(false);
    };

    Answer.prototype.delta = function (text) {
      if (!text) return;
      this.text += text;
      this.render();
    };

    Answer.prototype.message = function (text, mode) {
      this.text = String(text || "");
      this.mode = mode || "model";
      this.row.classList.toggle("is-notice", this.mode === "notice");
      if (this.mode === "retrieval_only" && !this.bubble.querySelector(".badge")) {
        var badge = el("div", "badge", "From the knowledge base");
        this.bubble.insertBefore(badge, this.body);
      }
      this.paint();
    };

    Answer.prototype.setSources = function (sources) {
      var old = this.bubble.querySelector(".sources");
      if (old) old.remove();
      this.sources = Array.isArray(sources) ? sources : [];
      if (!this.sources.length) return;
      var box = el("div", "sources");
      var heading = el("p", "sources-title", "Sources");
      heading.id = "src-" + randomId();
      var list = el("ol");
      list.setAttribute("aria-labelledby", heading.id);
      this.sources.forEach(function (source, n) {
        var item = el("li");
        var index = Number(source && source.index) || n + 1;
        item.value = index;
        var title = String((source && (source.title || source.url)) || "Source " + index);
        var href = source && source.url ? safeUrl(source.url) : null;
        if (href) {
          var a = el("a", null, title);
          a.href = href;
          a.target = "_blank";
          a.rel = "noopener noreferrer";
          item.appendChild(a);
        } else {
          item.appendChild(el("span", null, title));
        }
        list.appendChild(item);
      });
      box.appendChild(heading);
      box.appendChild(list);
      this.bubble.appendChild(box);
      scrollDown(false);
    };

    Answer.prototype.fail = function (message, retry) {
      this.error = true;
      this.row.classList.add("is-error");
      this.row.classList.remove("is-notice");
      if (!this.text.trim()) this.text = message || NETWORK_ERROR;
      this.paint();
      if (retry) {
        var button = el("button", "btn btn-small retry", "Try again");
        button.type = "button";
        button.addEventListener("click", retry);
        this.bubble.appendChild(button);
      }
    };

    Answer.prototype.finish = function () {
      this.complete = true;
      this.row.setAttribute("data-state", this.error ? "error" : "done");
      this.row.setAttribute("aria-busy", "false");
      if (this.typing.parentNode && !this.text) this.typing.remove();
    };

    Answer.prototype.remove = function () {
      this.row.remove();
      updateWelcome();
    };

    Answer.prototype.entry = function () {
      return { role: "assistant", text: this.text, mode: this.mode, sources: this.sources,
        error: this.error };
    };

    function restore(entry) {
      if (!entry || typeof entry.text !== "string") return;
      if (entry.role === "user") {
        addUser(entry.text);
        return;
      }
      var answer = new Answer();
      answer.message(entry.text, entry.mode);
      answer.setSources(entry.sources);
      if (entry.error) answer.fail(entry.text);
      answer.finish();
    }

    function restoreInput(text) {
      if (!input.value.trim()) {
        input.value = text;
        autosize();
      }
    }

    async function ask(text, messageId, isRetry) {
      setBusy(true);
      if (!isRetry) {
        addUser(text);
        transcript.push({ role: "user", text: text });
        saveTranscript();
      }
      var answer = new Answer();
      scrollDown(true);

      var request = { message: text, message_id: messageId };
      if (conversationId) request.conversation_id = conversationId;
      var mine = new AbortController();
      controller = mine;
      var outcome = null;

      function retry() {
        if (busy) return;
        answer.remove();
        var saved = transcript.indexOf(answer.saved);
        if (saved !== -1) {
          transcript.splice(saved, 1);
          saveTranscript();
        }
        if (input.value === text) {
          input.value = "";
          autosize();
        }
        ask(text, messageId, true);
      }

      try {
        var response;
        try {
          response = await fetch("/api/chat", {
            method: "POST",
            headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
            body: JSON.stringify(request),
            signal: mine.signal,
          });
        } catch (err) {
          if (mine.signal.aborted) return;
          answer.fail(NETWORK_ERROR, retry);
          restoreInput(text);
          return;
        }

        if (!response.ok) {
          var problem = null;
          try { problem = (await response.json()).error; } catch (e) { /* not JSON */ }
          answer.fail(typeof problem === "string" && problem
            ? problem
            : "Sorry, something went wrong (HTTP " + response.status + "). Please try again.");
          restoreInput(text);
          return;
        }

        try {
          await readEvents(response, function (name, data) {
            if (controller !== mine) return;
            if (name === "conversation" && data.conversation_id) {
              conversationId = String(data.conversation_id);
              storage.set(CONVERSATION_KEY, conversationId);
            } else if (name === "delta") {
              answer.delta(typeof data.text === "string" ? data.text : "");
            } else if (name === "message") {
              answer.message(data.text, data.mode);
            } else if (name === "sources") {
              answer.setSources(data.sources);
            } else if (name === "error") {
              answer.fail(data.message);
            } else if (name === "done") {
              outcome = data.outcome || "answered";
            }
          });
        } catch (err) {
          if (mine.signal.aborted) return;
        }

        if (outcome === null) {
          // The stream ended without `done`: keep what arrived and say it was cut short.
          if (answer.text.trim()) {
            answer.text += "\n\n_(" + INTERRUPTED + ")_";
            answer.fail();
          } else {
            answer.fail(NETWORK_ERROR, retry);
            restoreInput(text);
          }
        } else if (outcome === "duplicate" && !answer.text) {
          answer.message(DUPLICATE, "notice");
        }
      } finally {
        if (controller === mine) {
          answer.finish();
          if (answer.text) {
            answer.saved = answer.entry();
            transcript.push(answer.saved);
            saveTranscript();
          }
          controller = null;
          setBusy(false);
          scrollDown(false);
        }
      }
    }

    function submit() {
      var text = input.value;
      if (busy || !text.trim()) return;
      input.value = "";
      autosize();
      ask(text, randomId(), false);
      input.focus();
    }

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      submit();
    });

    input.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
        event.preventDefault();
        submit();
      }
    });

    input.addEventListener("input", autosize);

    reset.addEventListener("click", function () {
      if (controller) controller.abort();
      controller = null;
      setBusy(false);
      conversationId = null;
      transcript = [];
      storage.remove(CONVERSATION_KEY);
      storage.remove(TRANSCRIPT_KEY);
      log.textContent = "";
      updateWelcome();
      input.value = "";
      autosize();
      input.focus();
    });

    transcript.slice().forEach(restore);
    updateWelcome();
    setBusy(false);
    scrollDown(true);
    document.documentElement.classList.add("ready");
    input.focus();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
