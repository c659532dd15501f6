/* Runs before the page paints: tells the stylesheet that scripts run (html.js), so parts that
   only make sense with JavaScript (dialog Cancel, "Connecting…") stay hidden without it. */
document.documentElement.classList.add("js");
