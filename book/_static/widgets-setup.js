// Runs after require.js and before the vendored ipywidgets HTML manager (embed-amd.js),
// on the pages that show widgets. Two things the manager needs from this book:
(function () {
  // 1. Its icon fonts. Each module of embed-amd.js loads them from the folder require.js
  //    gives that module's name, which is below the page's own folder unless told
  //    otherwise. The fonts are in _static/html-manager/, next to this file: every module
  //    is placed there (whichever module's style comes first, the fonts are found).
  const here = document.currentScript.src;
  const fonts = here.slice(0, here.lastIndexOf("/") + 1) + "html-manager";
  const paths = { "@jupyter-widgets/html-manager/dist": fonts }; // dist/libembed-amd
  for (const name of ["base", "controls", "base7", "controls7", "html-manager"]) {
    paths["@jupyter-widgets/" + name] = fonts + "/" + name;
  }
  window.require.config({ paths });

  // 2. MathJax. A widget with text typesets it through MathJax 2's MathJax.Hub.Queue
  //    whenever window.MathJax exists; the book serves MathJax 3, which has no Hub. This
  //    Hub hands the element to MathJax 3 once it has started. MathJax 3 replaces the
  //    configuration object on start-up, so the Hub is put on both.
  if (window.MathJax === undefined) {
    return; // no math on this page: the manager will not typeset
  }
  const hub = {
    Queue(command) {
      const element = command[2];
      const mathjax = window.MathJax;
      if (mathjax.startup && mathjax.startup.promise && mathjax.typesetPromise) {
        mathjax.startup.promise.then(() => mathjax.typesetPromise([element]));
      }
    },
  };
  const config = window.MathJax;
  config.Hub = hub;
  const startup = config.startup || {};
  config.startup = Object.assign(startup, {
    ready() {
      window.MathJax.startup.defaultReady();
      window.MathJax.Hub = hub;
    },
  });
})();
