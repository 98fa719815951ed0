/* The /docs page: renders /openapi.json (OpenAPI 3.1) with no library.
 * Every text of the document goes into the page through textContent, never
 * as HTML, and the page loads nothing but /openapi.json and its own files
 * (the server's Content-Security-Policy allows nothing else). */
(function () {
  'use strict';

  var METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];
  var TOKEN_KEY = 'sagad-api-token';
  var doc = null;

  /* el('div', {class: 'x'}, child, 'text', ...): a DOM element. */
  function el(tag, attrs) {
    var e = document.createElement(tag);
    var k;
    for (k in attrs || {}) {
      if (attrs[k] !== null && attrs[k] !== undefined) e.setAttribute(k, attrs[k]);
    }
    for (var i = 2; i < arguments.length; i++) add(e, arguments[i]);
    return e;
  }

  function add(parent, child) {
    if (child === null || child === undefined || child === false) return;
    if (Array.isArray(child)) {
      child.forEach(function (c) { add(parent, c); });
    } else if (typeof child === 'string' || typeof child === 'number') {
      parent.appendChild(document.createTextNode(String(child)));
    } else {
      parent.appendChild(child);
    }
  }

  /* The object a local "#/a/b" reference names (undefined if none). */
  function lookup(ref) {
    if (typeof ref !== 'string' || ref.charAt(0) !== '#') return undefined;
    var node = doc;
    ref.slice(2).split('/').forEach(function (p) {
      p = p.replace(/~1/g, '/').replace(/~0/g, '~');
      node = node === undefined || node === null ? undefined : node[p];
    });
    return node;
  }

  function deref(obj) {
    for (var n = 0; obj && obj.$ref && n < 16; n++) obj = lookup(obj.$ref);
    return obj || {};
  }

  function refName(ref) {
    return ref.slice(ref.lastIndexOf('/') + 1);
  }

  /* A description: paragraphs, "- " lists and `code`. */
  function prose(text, cls) {
    if (!text) return null;
    var box = el('div', {class: cls || 'prose'});
    var list = null;
    String(text).split('\n').forEach(function (line) {
      if (/^\s*- /.test(line)) {
        if (!list) box.appendChild(list = el('ul'));
        list.appendChild(el('li', null, inline(line.replace(/^\s*- /, ''))));
      } else if (line.trim()) {
        list = null;
        box.appendChild(el('p', null, inline(line)));
      } else {
        list = null;
      }
    });
    return box;
  }

  function inline(text) {
    return String(text).split('`').map(function (part, i) {
      return i % 2 ? el('code', null, part) : part;
    });
  }

  /* ---- schemas ------------------------------------------------------------ */

  function typeText(s) {
    if (s === true) return 'any';
    if (s === false) return 'nothing';
    if (s.$ref) return refName(s.$ref);
    if ('const' in s) return JSON.stringify(s['const']);
    var t = s.type;
    if (Array.isArray(t)) t = t.join(' | ');
    if (t === 'array' && s.items) t = 'array of ' + typeText(s.items);
    if (!t) {
      if (s.oneOf) t = 'one of';
      else if (s.anyOf) t = 'any of';
      else if (s.allOf) t = 'all of';
      else if (s.properties) t = 'object';
      else t = 'any';
    }
    return t;
  }

  /* Facts about a schema besides its type: enum, format, pattern, bounds. */
  function facts(s) {
    var out = [];
    if (s === true || s === false || !s) return out;
    if (s['enum']) out.push(['one of', s['enum'].map(function (v) { return JSON.stringify(v); }).join(', ')]);
    if (s.format) out.push(['format', s.format]);
    if (s.pattern) out.push(['pattern', s.pattern]);
    [['minimum', '≥'], ['maximum', '≤'], ['minLength', 'min length'], ['maxLength', 'max length'],
     ['minItems', 'min items'], ['maxItems', 'max items']].forEach(function (b) {
      if (b[0] in s) out.push([b[1], String(s[b[0]])]);
    });
    if ('default' in s) out.push(['default', JSON.stringify(s['default'])]);
    if (s.contentMediaType) out.push(['media type', s.contentMediaType]);
    if (s.examples && s.examples.length) out.push(['example', JSON.stringify(s.examples[0])]);
    return out;
  }

  function factList(s) {
    var f = facts(s);
    if (!f.length) return null;
    return el('span', {class: 'facts'}, f.map(function (x) {
      return el('span', {class: 'fact'}, x[0] + ' ', el('code', null, x[1]));
    }));
  }

  function isComplex(s) {
    if (!s || typeof s !== 'object') return false;
    return !!(s.$ref || s.properties || s.patternProperties || s.oneOf || s.anyOf || s.allOf ||
              (s.items && isComplex(s.items)) || s['if']);
  }

  /* An expandable block whose content is built only when first opened, so
   * recursive and large schemas cost nothing until looked at. */
  function lazy(label, build, open) {
    var d = el('details', {class: 'lazy'}, el('summary', null, label));
    var built = false;
    function fill() {
      if (built || !d.open) return;
      built = true;
      add(d, build());
    }
    d.addEventListener('toggle', fill);
    if (open) {
      d.open = true;
      fill();
    }
    return d;
  }

  function refLink(ref) {
    return el('a', {href: '#schema-' + refName(ref), class: 'ref'}, refName(ref));
  }

  /* The body of a schema: its members, items, alternatives. */
  function schemaBody(s, depth) {
    if (s === true || s === false || !s) return el('div', {class: 'schema'}, typeText(s));
    if (s.$ref) {
      var target = lookup(s.$ref);
      return el('div', {class: 'schema'},
                target === undefined ? el('span', {class: 'bad'}, 'unresolved ' + s.$ref)
                                     : schemaBody(target, depth + 1));
    }
    var box = el('div', {class: 'schema'});
    add(box, prose(s.description, 'prose small'));
    var f = factList(s);
    if (f) add(box, el('div', null, f));
    if (s.properties || s.patternProperties) {
      var req = s.required || [];
      var rows = [];
      Object.keys(s.properties || {}).forEach(function (name) {
        rows.push(memberRow(name, s.properties[name], req.indexOf(name) >= 0, depth));
      });
      Object.keys(s.patternProperties || {}).forEach(function (rx) {
        rows.push(memberRow('/' + rx + '/', s.patternProperties[rx], false, depth, true));
      });
      add(box, el('table', {class: 'members'}, el('tbody', null, rows)));
      if (s.additionalProperties === false) add(box, el('div', {class: 'note'}, 'No other members.'));
      else if (s.required && !s.properties) add(box, el('div', {class: 'note'}, 'Requires ' + req.join(', ')));
    }
    if (s.type === 'array' && s.items && isComplex(s.items)) {
      add(box, el('div', {class: 'note'}, 'Items:'), child(s.items, depth));
    }
    ['oneOf', 'anyOf', 'allOf'].forEach(function (k) {
      if (!s[k]) return;
      add(box, el('div', {class: 'note'}, k === 'oneOf' ? 'Exactly one of:' : k === 'anyOf' ? 'Any of:' : 'All of:'));
      add(box, el('ul', {class: 'alts'}, s[k].map(function (alt) {
        return el('li', null, isComplex(alt) ? child(alt, depth) : el('code', null, typeText(alt)), factList(alt));
      })));
    });
    if (s['if']) {
      add(box, el('div', {class: 'note'}, 'Conditional: ', el('code', null,
        'if ' + JSON.stringify(s['if']) + (s.then ? ' then ' + JSON.stringify(s.then) : '') +
        (s['else'] ? ' else ' + JSON.stringify(s['else']) : ''))));
    }
    return box;
  }

  function child(s, depth) {
    var label = s.$ref ? refLink(s.$ref) : el('code', null, typeText(s));
    return lazy(label, function () { return schemaBody(s, depth + 1); }, depth < 1 && !s.$ref);
  }

  function memberRow(name, s, required, depth, pattern) {
    var d = s && s.$ref ? deref(s) : s;
    return el('tr', null,
      el('td', {class: 'name'}, el('code', null, name),
         required ? el('span', {class: 'req', title: 'required'}, '*') : null,
         pattern ? el('span', {class: 'muted'}, ' (pattern)') : null),
      el('td', {class: 'type'}, isComplex(s) ? child(s, depth) : el('code', null, typeText(s)),
         factList(s)),
      el('td', {class: 'desc'}, prose(s && s.description || (d && d.description), 'prose small')));
  }

  function schemaTree(s) {
    if (!s) return null;
    if (!isComplex(s)) return el('div', {class: 'schema'}, el('code', null, typeText(s)), ' ', factList(s),
                                 prose(s.description, 'prose small'));
    return child(s, 0);
  }

  function example(media) {
    if (!('example' in media)) return null;
    var v = media.example;
    return lazy('Example', function () {
      return el('pre', {class: 'example'}, typeof v === 'string' ? v : JSON.stringify(v, null, 2));
    });
  }

  function contentBlock(content) {
    return Object.keys(content || {}).map(function (mt) {
      var m = content[mt] || {};
      return el('div', {class: 'media'}, el('div', {class: 'mt'}, el('code', null, mt)),
                schemaTree(m.schema), example(m));
    });
  }

  /* ---- operations ----------------------------------------------------------- */

  function secured(op) {
    var sec = op.security !== undefined ? op.security : doc.security || [];
    return sec.length > 0 && !sec.some(function (r) { return Object.keys(r).length === 0; });
  }

  function paramTable(params) {
    if (!params.length) return null;
    return el('div', {class: 'block'}, el('h4', null, 'Parameters'),
      el('table', {class: 'params'},
        el('thead', null, el('tr', null, el('th', null, 'Name'), el('th', null, 'In'),
                              el('th', null, 'Schema'), el('th', null, 'Description'))),
        el('tbody', null, params.map(function (p) {
          return el('tr', null,
            el('td', {class: 'name'}, el('code', null, p.name),
               p.required ? el('span', {class: 'req', title: 'required'}, '*') : null),
            el('td', null, p['in']),
            el('td', null, p.schema ? schemaTree(p.schema) : null),
            el('td', null, prose(p.description, 'prose small'),
               'example' in p ? el('div', {class: 'muted'}, 'e.g. ', el('code', null, String(p.example))) : null));
        }))));
  }

  function responseBlock(code, r) {
    var ref = r.$ref ? refName(r.$ref) : null;
    r = deref(r);
    var headers = Object.keys(r.headers || {});
    return el('div', {class: 'response'},
      el('div', {class: 'rhead'},
         el('span', {class: 'status status-' + String(code).charAt(0) + 'xx'}, String(code)),
         el('span', {class: 'rdesc'}, inline(r.description || '')),
         ref ? el('span', {class: 'muted'}, ' (' + ref + ')') : null),
      headers.length ? el('table', {class: 'headers'}, el('tbody', null, headers.map(function (h) {
        var hd = deref(r.headers[h]);
        return el('tr', null,
          el('td', {class: 'name'}, el('code', null, h), hd.required ? el('span', {class: 'req'}, '*') : null),
          el('td', null, schemaTree(hd.schema)),
          el('td', null, prose(hd.description, 'prose small')));
      }))) : null,
      contentBlock(r.content));
  }

  function operation(path, item, method, op) {
    var params = (item.parameters || []).concat(op.parameters || []).map(deref);
    var id = 'op-' + (op.operationId || method + path);
    var body = op.requestBody ? deref(op.requestBody) : null;
    var sec = el('section', {class: 'op', id: id, 'data-search': (method + ' ' + path + ' ' +
                 (op.summary || '') + ' ' + (op.operationId || '')).toLowerCase()},
      el('details', {class: 'opd'},
        el('summary', null,
          el('span', {class: 'method method-' + method}, method.toUpperCase()),
          el('span', {class: 'path'}, path),
          el('span', {class: 'osum'}, op.summary || ''),
          secured(op) ? el('span', {class: 'lock', title: 'needs Authorization: Bearer'}, 'token') : null),
        el('div', {class: 'opbody'},
          prose(op.description),
          el('div', {class: 'muted'}, 'operationId ', el('code', null, op.operationId || ''),
             secured(op) ? ' · Authorization: Bearer <token> when sagad runs with --api-token'
                         : ' · no token needed'),
          paramTable(params),
          body ? el('div', {class: 'block'}, el('h4', null, 'Request body' + (body.required ? ' (required)' : '')),
                    prose(body.description, 'prose small'), contentBlock(body.content)) : null,
          el('div', {class: 'block'}, el('h4', null, 'Responses'),
             Object.keys(op.responses || {}).map(function (code) {
               return responseBlock(code, op.responses[code]);
             })),
          item['x-allow'] ? el('div', {class: 'muted'}, 'Other methods on this path: 405 with ',
                               el('code', null, 'Allow: ' + item['x-allow'])) : null)));
    return sec;
  }

  /* ---- the page --------------------------------------------------------------- */

  function render() {
    var content = document.getElementById('content');
    var toc = document.getElementById('toc-list');
    content.textContent = '';
    toc.textContent = '';
    document.getElementById('doc-title').textContent = (doc.info && doc.info.title || 'API') + ' API';
    document.getElementById('doc-version').textContent = 'version ' + (doc.info && doc.info.version || '?') +
      ' · OpenAPI ' + doc.openapi;
    document.title = document.getElementById('doc-title').textContent;
    add(content, el('section', {class: 'intro'},
                    doc.info && doc.info.summary ? el('p', {class: 'lead'}, doc.info.summary) : null,
                    prose(doc.info && doc.info.description)));

    var schemes = (doc.components || {}).securitySchemes || {};
    if (Object.keys(schemes).length) {
      add(content, el('section', {class: 'intro', id: 'auth'}, el('h2', null, 'Authorization'),
        Object.keys(schemes).map(function (name) {
          var s = schemes[name];
          return el('div', {class: 'scheme'}, el('code', null, name), ' ',
                    el('span', {class: 'muted'}, s.type + (s.scheme ? ' ' + s.scheme : '')),
                    prose(s.description, 'prose small'));
        })));
    }

    var groups = {};
    var order = (doc.tags || []).map(function (t) { return t.name; });
    Object.keys(doc.paths || {}).forEach(function (path) {
      var item = doc.paths[path];
      METHODS.forEach(function (m) {
        if (!item[m]) return;
        var tag = (item[m].tags || ['Other'])[0];
        if (order.indexOf(tag) < 0) order.push(tag);
        (groups[tag] = groups[tag] || []).push([path, item, m, item[m]]);
      });
    });
    order.forEach(function (tag) {
      var ops = groups[tag];
      if (!ops) return;
      var t = (doc.tags || []).filter(function (x) { return x.name === tag; })[0] || {};
      var gid = 'tag-' + tag.replace(/[^A-Za-z0-9_-]/g, '-');
      add(content, el('h2', {class: 'tag', id: gid}, tag), prose(t.description, 'prose tagdesc'));
      add(toc, el('a', {class: 'toc-tag', href: '#' + gid}, tag));
      ops.forEach(function (o) {
        var sec = operation(o[0], o[1], o[2], o[3]);
        add(content, sec);
        add(toc, el('a', {class: 'toc-op', href: '#' + sec.id, 'data-for': sec.id},
                    el('span', {class: 'method method-' + o[2]}, o[2].toUpperCase()), ' ', o[0]));
      });
    });

    var schemas = (doc.components || {}).schemas || {};
    add(content, el('h2', {class: 'tag', id: 'schemas'}, 'Schemas'));
    add(toc, el('a', {class: 'toc-tag', href: '#schemas'}, 'Schemas'));
    Object.keys(schemas).forEach(function (name) {
      add(content, el('div', {class: 'comp', id: 'schema-' + name},
                      lazy(el('span', null, el('code', null, name), ' ',
                              el('span', {class: 'muted'}, typeText(schemas[name]))),
                           function () { return schemaBody(schemas[name], 1); })));
    });
    follow();
    document.body.setAttribute('data-state', 'ready');
  }

  /* Opens what the URL's #fragment names (an operation or a schema). */
  function follow() {
    var id = decodeURIComponent(location.hash.slice(1));
    var target = id && document.getElementById(id);
    if (!target) return;
    var d = target.querySelector('details');
    if (d && !d.open) {
      d.open = true;
      d.dispatchEvent(new Event('toggle'));
    }
    target.scrollIntoView();
  }

  function filter() {
    var q = document.getElementById('filter').value.trim().toLowerCase();
    Array.prototype.forEach.call(document.querySelectorAll('section.op'), function (s) {
      var hit = !q || s.getAttribute('data-search').indexOf(q) >= 0;
      s.classList.toggle('hidden', !hit);
      var link = document.querySelector('a[data-for="' + s.id + '"]');
      if (link) link.classList.toggle('hidden', !hit);
    });
  }

  function fail(text) {
    document.body.setAttribute('data-state', 'error');
    var st = document.getElementById('status') || el('p', {id: 'status'});
    st.className = 'error';
    st.textContent = text;
    document.getElementById('content').appendChild(st);
  }

  /* With --api-token, /openapi.json wants the token: ask for it once and
   * keep it for this tab only. */
  function askToken() {
    var content = document.getElementById('content');
    var input = el('input', {type: 'password', id: 'token', placeholder: 'API token', autocomplete: 'off'});
    var form = el('form', {class: 'token'}, el('p', null, 'This sagad needs an API token (--api-token).'),
                  input, el('button', {type: 'submit'}, 'Load'));
    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, input.value);
      load();
    });
    content.textContent = '';
    content.appendChild(form);
    document.body.setAttribute('data-state', 'token');
  }

  function load() {
    var token = sessionStorage.getItem(TOKEN_KEY);
    var headers = {Accept: 'application/json'};
    if (token) headers.Authorization = 'Bearer ' + token;
    fetch('/openapi.json', {headers: headers, credentials: 'same-origin'}).then(function (r) {
      if (r.status === 401) {
        sessionStorage.removeItem(TOKEN_KEY);
        askToken();
        return null;
      }
      if (!r.ok) throw new Error('GET /openapi.json answered ' + r.status);
      return r.json();
    }).then(function (d) {
      if (!d) return;
      doc = d;
      render();
    })['catch'](function (e) {
      fail('Cannot show the API: ' + e.message);
    });
  }

  document.getElementById('filter').addEventListener('input', filter);
  window.addEventListener('hashchange', follow);
  load();
})();
