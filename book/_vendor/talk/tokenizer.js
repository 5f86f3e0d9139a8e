// The tokenizers of tinyllm in JavaScript: the same ids as the Python package.
//
// fromDict(state) reads the saved form that the Python tokenizer's to_dict() writes
// (the page's model/<name>.json holds it). tests/test_web_page.py checks that encode and
// decode here give exactly the ids and text of the Python package for a list of strings.
(function (root) {
  "use strict";

  // tinyllm.tokenizer.CharTokenizer: one id per character, in the order of `chars`.
  // Python iterates a str by code points; `for (const c of text)` does too (never by
  // UTF-16 units), so a character outside the Basic Multilingual Plane is one token here
  // as there, and positions in error messages agree.
  class CharTokenizer {
    constructor(state) {
      if (!state || state.type !== "char" || !Array.isArray(state.chars)) {
        throw new Error("not a character tokenizer (expected type 'char' and a list 'chars')");
      }
      this.itos = state.chars.slice();
      this.stoi = new Map(this.itos.map((c, i) => [c, i]));
      if (this.stoi.size !== this.itos.length) throw new Error("the vocabulary has repeated characters");
      this.specialTokens = {};
    }

    get vocabSize() {
      return this.itos.length;
    }

    encode(text) {
      const ids = [];
      let position = 0;
      for (const c of text) {
        const id = this.stoi.get(c);
        if (id === undefined) {
          throw new Error(
            `character '${c}' at position ${position} is not in the vocabulary ` +
            `of ${this.vocabSize} characters`);
        }
        ids.push(id);
        position += 1;
      }
      return ids;
    }

    decode(ids) {
      return ids.map((id) => {
        if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
          throw new Error(`token id ${id} is outside the vocabulary (0..${this.vocabSize - 1})`);
        }
        return this.itos[id];
      }).join("");
    }
  }

  function fromDict(state) {
    if (state && state.type === "char") return new CharTokenizer(state);
    throw new Error(`this page cannot read tokenizers of type ${JSON.stringify(state && state.type)}`);
  }

  root.tinyllmTokenizer = { CharTokenizer, fromDict };
})(typeof window !== "undefined" ? window : globalThis);
