// The Erase Concept tab's Start button: give the run a task id and follow it with the WebUI's own progress bar
// (percentage, ETA, the engine's status line) and live preview (the loss curve), as txt2img's Generate does.
// Where the WebUI's progress script did not load, the run still starts; its result shows when it ends.
function concept_erasure_submit() {
    var args = Array.from(arguments);
    if (typeof randomId === "function" && typeof requestProgress === "function") {
        args[0] = randomId();
        requestProgress(
            args[0],
            gradioApp().getElementById("concept_erasure_progress"),
            gradioApp().getElementById("concept_erasure_grid"),
            function() {}
        );
    } else {
        args[0] = "task(concept-erasure-" + Date.now() + ")";
    }
    return args;
}
